/// Shared by the workload kinds that run pods from a template and can be scaled.
public protocol ScalableWorkload: TypedObject {}

extension ScalableWorkload {
    public var replicas: Int? {
        get { object["spec", "replicas"]?.int.map(Int.init) }
        set { object["spec", "replicas"] = newValue.map { .int(Int64($0)) } }
    }
    public var readyReplicas: Int { object["status", "readyReplicas"]?.int.map(Int.init) ?? 0 }
    public var selector: [String: String] { KubeObject.stringMap(object["spec", "selector", "matchLabels"]) }
    /// The images of the pod template's containers.
    public var images: [String] {
        (object["spec", "template", "spec", "containers"]?.array ?? []).compactMap { $0["image"]?.string }
    }
    /// The claims the pod template mounts.
    public var claimNames: [String] {
        (object["spec", "template", "spec", "volumes"]?.array ?? [])
            .compactMap { $0["persistentVolumeClaim", "claimName"]?.string }
    }
}

public struct Deployment: ScalableWorkload {
    public static let resource = APIResource(group: "apps", version: "v1", name: "deployments", kind: "Deployment",
                                             namespaced: true, shortNames: ["deploy"], subresources: ["status", "scale"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }
}

public struct StatefulSet: ScalableWorkload {
    public static let resource = APIResource(group: "apps", version: "v1", name: "statefulsets", kind: "StatefulSet",
                                             namespaced: true, shortNames: ["sts"], subresources: ["status", "scale"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var serviceName: String? { object["spec", "serviceName"]?.string }
    /// Names of the volume claim templates; claim `T-NAME-i` belongs to pod `NAME-i`.
    public var volumeClaimTemplateNames: [String] {
        (object["spec", "volumeClaimTemplates"]?.array ?? []).compactMap { $0["metadata", "name"]?.string }
    }
    /// The claims its replicas get from the templates: `T-NAME-i` for each template `T` and replica `i`
    /// (at least one replica: a set scaled to zero keeps its claims).
    public var templateClaimNames: [String] {
        let count = max(1, replicas ?? 1)
        return volumeClaimTemplateNames.flatMap { template in (0..<count).map { "\(template)-\(object.name)-\($0)" } }
    }
}
