import Foundation
import Kube
import Repository
import Snapshot

/// Binds blueprints to workloads by labels (the other way is the workload's `cairn.dev/blueprint`
/// annotation).
public struct BlueprintBinding: Sendable, Equatable {
    public var blueprint: String
    public var matchLabels: [String: String]

    public init(blueprint: String, matchLabels: [String: String]) {
        self.blueprint = blueprint
        self.matchLabels = matchLabels
    }
}

/// What a backup does for consistency besides reading volumes: the blueprints bound to the application's
/// workloads and the hooks of the Policy or BackupAction, in this order —
///
/// 1. every bound workload's `backup` action (database-native dumps: artifacts streamed into the
///    repository);
/// 2. the hooks' `beforeCapture`, then each workload's `beforeCapture` (fences);
/// 3. the volumes are read (`capture`);
/// 4. each workload's `afterCapture`, then the hooks' `afterCapture` — whenever step 2 began, whatever
///    happened since (a fence is always released).
///
/// A failing phase fails the backup (no restore point is written) with the phase, where it ran, its exit
/// status and its stderr's last lines; the records of every phase go into the restore point's metadata.
public struct ConsistencyPlan: Sendable {
    public struct Bound: Sendable {
        public var workload: WorkloadRef
        public var blueprint: Blueprint
    }

    public var bound: [Bound]
    public var hooks: [String: [Blueprint.Phase]]

    /// Finds the blueprint of each Deployment and StatefulSet among `objects`: its annotation first, then
    /// the first binding whose labels it carries. A name that `blueprints` does not hold is an error.
    /// `invalid`: blueprints that exist but do not check, with why (named in the error).
    public init(objects: [KubeObject], blueprints: [String: Blueprint], invalid: [String: String] = [:],
                bindings: [BlueprintBinding], hooks: [String: [Blueprint.Phase]]) throws(ProtectionError) {
        self.hooks = hooks
        bound = []
        for object in objects where object.group == "apps" && (object.kind == "Deployment" || object.kind == "StatefulSet") {
            let ref = WorkloadRef(kind: object.kind, name: object.name)
            let name: String
            if let annotated = object.annotations[Blueprint.annotation] {
                name = annotated
            } else if let binding = bindings.first(where: { b in b.matchLabels.allSatisfy { object.labels[$0.key] == $0.value } }) {
                name = binding.blueprint
            } else {
                continue
            }
            if let problem = invalid[name], blueprints[name] == nil {
                throw ProtectionError(.invalidBlueprint, "\(ref) names blueprint \(name), which is invalid: \(problem)")
            }
            guard let blueprint = blueprints[name] else {
                throw ProtectionError(.invalidBlueprint, "\(ref) names blueprint \(name), which does not exist"
                                      + (blueprints.isEmpty ? "" : " (blueprints: \(blueprints.keys.sorted().joined(separator: ", ")))"))
            }
            bound.append(Bound(workload: ref, blueprint: blueprint))
        }
    }

    public var isEmpty: Bool { bound.isEmpty && hooks.values.allSatisfy(\.isEmpty) }

    /// The claims whose data the blueprints hold instead of a volume copy (`volumes: skip`).
    public func skippedClaims(in objects: [KubeObject]) -> Set<String> {
        var claims: Set<String> = []
        for entry in bound where entry.blueprint.volumes == .skip {
            guard let object = objects.first(where: { $0.kind == entry.workload.kind && $0.name == entry.workload.name }) else { continue }
            claims.formUnion(StatefulSet(object).claimNames)
            if entry.workload.kind == "StatefulSet" {
                let replicas = max(1, Int(object["spec", "replicas"]?.int ?? 1))
                for template in StatefulSet(object).volumeClaimTemplateNames {
                    for i in 0..<replicas { claims.insert("\(template)-\(object.name)-\(i)") }
                }
            }
        }
        return claims
    }

    /// The result of the backup-side steps.
    public struct Result: Sendable {
        public var records: [PhaseRecord] = []
        /// `artifacts/<Kind>-<name>/<phase>` → stored content.
        public var artifacts: [String: Node] = [:]
    }

    /// Runs steps 1, 2 and 4 around `capture` (step 3). `runner` runs the hooks and any blueprint that
    /// `runners` has none of its own for (by blueprint name: a namespace's blueprint runs as its author).
    public func backup(runner: BlueprintRunner, runners: [String: BlueprintRunner] = [:], progress: @Sendable (String) -> Void,
                       capture: () async throws -> Void) async throws -> Result {
        let hooksRunner = runner
        func runnerFor(_ blueprint: Blueprint?) -> BlueprintRunner {
            blueprint.flatMap { runners[$0.name] } ?? hooksRunner
        }
        var result = Result()
        func take(_ outcome: BlueprintRunner.Outcome, for workload: WorkloadRef?) throws(ProtectionError) {
            result.records += outcome.records
            if let workload {
                for (phase, node) in outcome.artifacts { result.artifacts[Self.artifactDirectory(workload) + "/" + phase] = node }
            }
            try outcome.check()
        }
        let time = Date()
        for entry in bound {
            guard let action = entry.blueprint.actions[.backup] else { continue }
            try take(try await runnerFor(entry.blueprint).run(action, named: "backup", blueprint: entry.blueprint.name, workload: entry.workload,
                                          time: time, progress: progress), for: entry.workload)
        }
        // Fences: hooks first (they may stop writers), then each workload's.
        var fenced: [(WorkloadRef?, Blueprint)] = []
        var failure: Error?
        do {
            if let phases = hooks["beforeCapture"], !phases.isEmpty {
                fenced.append((nil, Self.hookBlueprint(phases: phases, afterCapture: hooks["afterCapture"] ?? [])))
                try take(try await hooksRunner.run(Blueprint.Action(phases: phases), named: "beforeCapture", blueprint: "hooks",
                                              workload: nil, time: time, progress: progress), for: nil)
            } else if let phases = hooks["afterCapture"], !phases.isEmpty {
                fenced.append((nil, Self.hookBlueprint(phases: [], afterCapture: phases)))
            }
            for entry in bound {
                fenced.append((entry.workload, entry.blueprint))
                guard let action = entry.blueprint.actions[.beforeCapture] else { continue }
                try take(try await runnerFor(entry.blueprint).run(action, named: "beforeCapture", blueprint: entry.blueprint.name,
                                              workload: entry.workload, time: time, progress: progress), for: entry.workload)
            }
            try await capture()
        } catch {
            failure = error
        }
        // Releases, in the reverse order of the fences.
        for (workload, blueprint) in fenced.reversed() {
            guard let action = blueprint.actions[.afterCapture] else { continue }
            do {
                try take(try await runnerFor(workload == nil ? nil : blueprint).run(action, named: "afterCapture", blueprint: workload == nil ? "hooks" : blueprint.name,
                                              workload: workload, time: time, progress: progress), for: workload)
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        return result
    }

    static func hookBlueprint(phases: [Blueprint.Phase], afterCapture: [Blueprint.Phase]) -> Blueprint {
        var actions: [Blueprint.ActionName: Blueprint.Action] = [:]
        if !afterCapture.isEmpty { actions[.afterCapture] = Blueprint.Action(phases: afterCapture) }
        return Blueprint(name: "hooks", actions: actions)
    }

    /// Where a workload's artifacts stand in a restore point.
    public static func artifactDirectory(_ workload: WorkloadRef) -> String {
        "artifacts/\(workload.kind)-\(workload.name)"
    }
}
