import Foundation
import Kube
import Repository
import Snapshot

/// Backs up an application — a namespace, optionally narrowed by a label selector — into one restore
/// point: its objects (captured through discovery, `ApplicationCapture`) and the files of its bound
/// claims (through `VolumeAccess`), with metadata. A restore point is written only when every volume
/// was read: never a restore point without its data.
public struct ApplicationBackup: Sendable {
    public enum Quiesce: String, Sendable, CaseIterable {
        /// Volumes are read while the application runs (crash-consistent at best per file).
        case none
        /// Deployments and StatefulSets are scaled to zero while the volumes are read and back afterwards:
        /// consistent by stopping (the state a clean shutdown leaves).
        case scale
    }

    public struct Options: Sendable {
        public var namespace: String
        public var labelSelector: String?
        public var rules: CaptureRules
        public var volumeAccess: VolumeAccessMode
        public var moverImage: String
        public var quiesce: Quiesce
        /// Whether volume data is read at all (`--no-volumes`: objects only).
        public var volumes: Bool
        public var quiesceTimeout: Duration

        public init(namespace: String, labelSelector: String? = nil, rules: CaptureRules = CaptureRules(),
                    volumeAccess: VolumeAccessMode = .auto, moverImage: String = MoverVolumeAccess.defaultImage,
                    quiesce: Quiesce = .none, volumes: Bool = true, quiesceTimeout: Duration = .seconds(300)) {
            self.namespace = namespace
            self.labelSelector = labelSelector
            self.rules = rules
            self.volumeAccess = volumeAccess
            self.moverImage = moverImage
            self.quiesce = quiesce
            self.volumes = volumes
            self.quiesceTimeout = quiesceTimeout
        }
    }

    public struct Result: Sendable {
        public var snapshot: SnapshotManifest
        public var metadata: RestorePoint.Metadata
        public var seconds: Double
    }

    public let client: KubeClient
    public let repository: Repository
    public let options: Options

    public init(client: KubeClient, repository: Repository, options: Options) {
        self.client = client
        self.repository = repository
        self.options = options
    }

    /// Runs the backup; `progress` hears a line per step.
    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let start = Date()
        let namespace = options.namespace
        progress("capturing the objects of namespace \(namespace)")
        let capture = try await ApplicationCapture(client: client, rules: options.rules,
                                                   labelSelector: options.labelSelector).capture(namespace: namespace)
        var warnings = capture.warnings
        let claims = options.volumes ? try await boundClaims(capture, warnings: &warnings) : []
        var workloads: [(APIResource, String, Int)] = []
        if options.quiesce == .scale {
            workloads = capture.objects.compactMap { object in
                guard object.group == "apps", object.kind == "Deployment" || object.kind == "StatefulSet",
                      let replicas = object["spec", "replicas"]?.int, replicas > 0 else { return nil }
                return (object.kind == "Deployment" ? Deployment.resource : StatefulSet.resource, object.name, Int(replicas))
            }
        }
        let result = try await RepositoryLock.with(repository, exclusive: false, operation: "app backup", wait: 30) {
            try await repository.loadIndex()
            let previous = try await RestorePoint.list(in: repository, namespace: namespace).last
            var earlier: [String: Node] = [:]
            if let previous { earlier = try await RestorePoint.volumes(of: previous.snapshot, in: repository) }
            var nodes: [String: Node] = [:]
            var transfers: [VolumeTransfer] = []
            var unscaled: [String] = []
            if !claims.isEmpty {
                if !workloads.isEmpty {
                    progress("quiescing: scaling \(workloads.map { "\($0.0.kind)/\($0.1)" }.joined(separator: ", ")) to zero")
                }
                unscaled = try await quiesced(workloads) {
                    for claim in claims {
                        let access = await options.volumeAccess.accessor(for: claim, client: client, repository: repository,
                                                                         moverImage: options.moverImage)
                        progress("reading claim \(claim.claim) (\(access.method))")
                        let (node, transfer) = try await access.backup(claim, previous: earlier[claim.claim])
                        nodes[claim.claim] = node
                        transfers.append(transfer)
                        progress("  \(transfer.files) files, \(transfer.bytes) bytes, \(transfer.bytesAdded ?? 0) new, \(String(format: "%.1f", transfer.seconds)) s")
                    }
                }
            }
            var withWarnings = capture
            withWarnings.warnings = warnings
            let manifest = try await RestorePoint.write(withWarnings, namespace: namespace, labelSelector: options.labelSelector,
                                                        volumes: nodes, transfers: transfers,
                                                        quiesced: workloads.map { "\($0.0.kind)/\($0.1)" }, to: repository)
            if !unscaled.isEmpty {
                throw VolumeError("restore point \(manifest.shortID) was written, but these workloads could not be scaled back: \(unscaled.joined(separator: "; "))")
            }
            return manifest
        }
        let metadata = try await RestorePoint.metadata(result, from: repository)
        return Result(snapshot: result, metadata: metadata, seconds: Date().timeIntervalSince(start))
    }

    /// The captured claims that are bound, with their volumes and the node a running pod uses them on.
    func boundClaims(_ capture: ApplicationCapture.Result, warnings: inout [String]) async throws -> [ClaimVolume] {
        let volumes = Dictionary(capture.objects.filter { $0.kind == "PersistentVolume" && $0.group.isEmpty }
            .map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var nodes: [String: String] = [:]
        if let pods = try? await client.list(Pod.self, namespace: options.namespace) {
            for pod in pods where pod.phase == "Running" {
                for claim in pod.claimNames { nodes[claim] = pod.nodeName }
            }
        }
        var claims: [ClaimVolume] = []
        for object in capture.objects where object.kind == "PersistentVolumeClaim" && object.group.isEmpty {
            guard object["status", "phase"]?.string == "Bound", let volumeName = object["spec", "volumeName"]?.string else {
                warnings.append("claim \(object.name) is not bound: it has no data to back up")
                continue
            }
            claims.append(ClaimVolume(namespace: options.namespace, claim: object.name, volume: volumes[volumeName],
                                      node: nodes[object.name]))
        }
        return claims
    }

    /// Scales the workloads to zero, waits until their pods are gone, runs `body`, and scales them back
    /// to their replica counts whatever happened. Returns the workloads that could not be scaled back.
    func quiesced(_ workloads: [(APIResource, String, Int)], _ body: () async throws -> Void) async throws -> [String] {
        guard !workloads.isEmpty else {
            try await body()
            return []
        }
        let namespace = options.namespace
        func scale(_ workload: (APIResource, String, Int), to replicas: Int) async throws {
            _ = try await client.patch(workload.0, workload.1, namespace: namespace,
                                       .merge(["spec": ["replicas": .int(Int64(replicas))]]))
        }
        var failure: Error?
        do {
            for workload in workloads { try await scale(workload, to: 0) }
            let deadline = ContinuousClock.now + options.quiesceTimeout
            for workload in workloads {
                while true {
                    let current = try await client.get(workload.0, workload.1, namespace: namespace)
                    if (current["status", "replicas"]?.int ?? 0) == 0 { break }
                    guard ContinuousClock.now < deadline else {
                        throw VolumeError("\(workload.0.kind)/\(workload.1) still had pods \(options.quiesceTimeout) after scaling it to zero")
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
            try await body()
        } catch {
            failure = error
        }
        var unscaled: [String] = []
        for workload in workloads {
            do { try await scale(workload, to: workload.2) } catch { unscaled.append("\(workload.0.kind)/\(workload.1): \(error)") }
        }
        if let failure {
            if unscaled.isEmpty { throw failure }
            throw VolumeError("\(failure); and these workloads could not be scaled back: \(unscaled.joined(separator: "; "))")
        }
        return unscaled
    }
}
