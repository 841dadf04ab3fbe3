import KubeModel

/// Where a workload's pods may run, read from its pod template, and which claims they mount.
public enum WorkloadPlacement {
    /// The path of the pod spec in an object of `kind`: a Pod's own spec, a workload's pod template; nil
    /// for kinds that run no pods.
    public static func podSpecPath(_ kind: String) -> [String]? {
        switch kind {
        case "Pod": return ["spec"]
        case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController":
            return ["spec", "template", "spec"]
        case "CronJob": return ["spec", "jobTemplate", "spec", "template", "spec"]
        default: return nil
        }
    }

    /// For each claim the pods of `objects` mount (a StatefulSet's claims from its templates included):
    /// where those pods may run — a JSON object with whichever of `nodeSelector`, `affinity.nodeAffinity`
    /// and `tolerations` their template sets. Inter-pod affinity is left out: it names other pods, which a
    /// restore has not started yet. A claim mounted by several workloads takes the first one's (by kind
    /// and name), as the scheduler would have to satisfy all of them anyway.
    public static func claimPlacements(_ objects: [KubeObject]) -> [String: JSONValue] {
        var placements: [String: JSONValue] = [:]
        for object in objects.sorted(by: { ($0.kind, $0.name) < ($1.kind, $1.name) }) {
            guard let path = podSpecPath(object.kind), object.group == "" || object.group == "apps" || object.group == "batch",
                  let spec = object.json[path: path[...]] else { continue }
            var placement = JSONValue.emptyObject
            if let selector = spec["nodeSelector"], selector.object?.isEmpty == false { placement["nodeSelector"] = selector }
            if let affinity = spec["affinity", "nodeAffinity"], affinity.object?.isEmpty == false {
                placement["affinity"] = ["nodeAffinity": affinity]
            }
            if let tolerations = spec["tolerations"], tolerations.array?.isEmpty == false { placement["tolerations"] = tolerations }
            guard placement.object?.isEmpty == false else { continue }
            var claims = (spec["volumes"]?.array ?? []).compactMap { $0["persistentVolumeClaim", "claimName"]?.string }
            if object.kind == "StatefulSet" { claims += StatefulSet(object).templateClaimNames }
            for claim in claims where placements[claim] == nil { placements[claim] = placement }
        }
        return placements
    }
}
