import Foundation
import Kube
import Repository
import Snapshot

/// The `delete` actions of the blueprints a restore point's workloads ran, run before the restore point's
/// data is removed: they remove what the backup kept outside the restore point (an external backup, an
/// object in another store), with the backup's artifacts on stdin (`input`) — the ID of what to remove.
///
/// Each runs in the restore point's namespace with the identity its backup ran with: a namespace's
/// blueprint as its author, a cluster-wide one as whoever asked for the backup (both recorded in the
/// restore point). A restore point that does not record that identity (one written by `cairn app
/// backup`) has its delete actions skipped, not run with Cairn's rights. Exec phases need the workload to
/// exist; task phases do not.
public struct BlueprintDeletion: Sendable {
    public let repository: Repository
    /// A client acting as the user a restore point records (the JSON of its `UserInfo`).
    public let identity: @Sendable (String) throws -> KubeClient

    public init(repository: Repository, identity: @escaping @Sendable (String) throws -> KubeClient) {
        self.repository = repository
        self.identity = identity
    }

    public struct Outcome: Sendable {
        public var records: [PhaseRecord] = []
        /// Blueprints whose delete action was not run, with why.
        public var skipped: [String] = []
        /// The first failed phase (`onError: fail`): the restore point must stay until it succeeds.
        public var failure: ProtectionError?
    }

    /// Whether a restore point has delete actions to run (it ran blueprints at all: reading them needs more).
    public static func mayRun(_ metadata: RestorePoint.Metadata) -> Bool { metadata.blueprints?.isEmpty == false }

    /// Runs the delete actions of `snapshot`'s blueprints in `namespace`.
    public func run(_ snapshot: SnapshotManifest, metadata: RestorePoint.Metadata, namespace: String,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Outcome {
        var outcome = Outcome()
        guard Self.mayRun(metadata) else { return outcome }
        for (workload, blueprint, artifacts) in try await RestorePoint.consistency(of: snapshot, metadata: metadata, in: repository) {
            guard let action = blueprint.actions[.delete] else { continue }
            guard let user = metadata.blueprintAuthors?[blueprint.name] ?? metadata.blueprintRequester else {
                outcome.skipped.append("\(blueprint.name) for \(workload): the restore point does not record whose rights its backup ran with")
                continue
            }
            let client = try identity(user)
            let live: KubeObject?
            do {
                live = try await client.get(workload.resource, workload.name, namespace: namespace)
            } catch let error as KubeError where error.code == .notFound {
                live = nil
            }
            let runner = BlueprintRunner(client: client, namespace: namespace, repository: repository)
            let result = try await runner.run(action, named: "delete", blueprint: blueprint.name, workload: live == nil ? nil : workload,
                                              inputs: artifacts, values: BlueprintRunner.templateValues(workload, object: live),
                                              progress: progress)
            outcome.records += result.records
            if let failure = result.failure, outcome.failure == nil { outcome.failure = failure }
        }
        return outcome
    }
}
