import Concurrent
import Foundation
import Kube
import Repository
import Snapshot

/// Volume access through a mover pod: a pod of Cairn's own image, in the claim's namespace, mounts the
/// claim (read-only for a backup) on the node that holds it; Cairn runs `cairn mover send|receive` in it
/// over `pods/exec` and exchanges a volume stream (docs/repository-format.md, "Volume stream") with it.
/// Works for any volume type on any cluster; the pod sees only its own volume — no repository
/// credentials, password or keys ever enter the application's namespace. The pod is deleted afterwards,
/// whatever happened.
public struct MoverVolumeAccess: VolumeAccess {
    public static let defaultImage = "cairn.local/cairn:\(CairnVersion.current)"
    public static let label = "cairn.dev/mover"

    public let client: KubeClient
    public let repository: Repository
    public let image: String
    /// How long a mover pod may take to start.
    public var startTimeout: Duration
    /// How long one volume's transfer may take.
    public var transferTimeout: Duration
    public var method: String { "mover" }

    public init(client: KubeClient, repository: Repository, image: String = MoverVolumeAccess.defaultImage,
                startTimeout: Duration = .seconds(180), transferTimeout: Duration = .seconds(6 * 3600)) {
        self.client = client
        self.repository = repository
        self.image = image
        self.startTimeout = startTimeout
        self.transferTimeout = transferTimeout
    }

    public func backup(_ volume: ClaimVolume, previous: Node?) async throws -> (Node, VolumeTransfer) {
        let start = Date()
        let repository = self.repository
        let claim = volume.claim
        let result = try await withMover(for: volume, readOnly: true) { pod in
            try await client.exec(pod: pod, namespace: volume.namespace, container: "mover",
                                  command: ["/usr/local/bin/cairn", "mover", "send", "/data"] + volume.exclude.flatMap { ["--exclude", $0] },
                                  stdin: true,
                                  timeout: transferTimeout) { session in
                let stderr = Locked([UInt8]())
                let writer = VolumeStreamWriter(sink: { try await session.write($0) })
                try await StreamArchiver.writeListing(of: previous, in: repository, to: writer)
                let reader = VolumeStreamReader(source: {
                    while let piece = try await session.next() {
                        switch piece {
                        case .stdout(let bytes): return bytes
                        case .stderr(let bytes): stderr.withLock { Self.keepTail(&$0, bytes) }
                        }
                    }
                    return nil
                })
                do {
                    return try await StreamArchiver(repository: repository, previous: previous).archive(reader, name: claim)
                } catch let error as SnapshotError where error.code == .malformedStream {
                    let said = String(decoding: stderr.withLock { $0 }, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    throw ProtectionError(.moverFailed, "reading claim \(volume.namespace)/\(claim) through its mover: \(error)\(said.isEmpty ? "" : " — the mover said: \(said)")", cause: error)
                }
            }
        }
        return (result.root, VolumeTransfer(claim: claim, method: method, files: result.files, bytes: result.bytes,
                                            bytesAdded: result.bytesAdded, seconds: Date().timeIntervalSince(start),
                                            problems: result.warnings))
    }

    public func restore(_ data: Node, into volume: ClaimVolume, exact: Bool) async throws -> VolumeTransfer {
        let start = Date()
        let repository = self.repository
        let totals = try await withMover(for: volume, readOnly: false) { pod in
            try await client.exec(pod: pod, namespace: volume.namespace, container: "mover",
                                  command: ["/usr/local/bin/cairn", "mover", "receive", "/data"] + (exact ? ["--exact"] : []),
                                  stdin: true,
                                  timeout: transferTimeout) { session in
                let writer = VolumeStreamWriter(sink: { try await session.write($0) })
                _ = try await TreeSender(repository: repository).send(data, to: writer)
                var out: [UInt8] = []
                var err: [UInt8] = []
                while let piece = try await session.next() {
                    switch piece {
                    case .stdout(let bytes): out += bytes
                    case .stderr(let bytes): Self.keepTail(&err, bytes)
                    }
                }
                let code = try await session.exitCode()
                guard code == 0, let totals = try? JSONDecoder().decode(DirectoryReceiver.Totals.self, from: Data(out)) else {
                    let said = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    throw ProtectionError(.moverFailed, "writing claim \(volume.namespace)/\(volume.claim) through its mover failed (exit \(code)): \(said)")
                }
                return totals
            }
        }
        return VolumeTransfer(claim: volume.claim, method: method, files: totals.files, bytes: totals.bytes,
                              seconds: Date().timeIntervalSince(start), problems: totals.errors)
    }

    /// What a mover says on stderr is kept for error messages, its last 16 KiB only.
    static func keepTail(_ kept: inout [UInt8], _ more: [UInt8]) {
        kept += more
        if kept.count > 16 << 10 { kept.removeFirst(kept.count - (16 << 10)) }
    }

    /// The mover pod's manifest.
    /// A mover must read (backup) or write with their owners and modes (restore) files of any owner, so it
    /// runs as root — with every capability dropped but those: `DAC_READ_SEARCH` to read; to restore also
    /// `CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID` (owners, modes, times, set-id bits) and `MKNOD` (device
    /// files). Its root file system is read-only, so the binary the controller talks to cannot be replaced
    /// from inside the pod; no privilege escalation.
    static func securityContext(readOnly: Bool) -> JSONValue {
        let add: [JSONValue] = readOnly ? ["DAC_READ_SEARCH"]
                                        : ["DAC_READ_SEARCH", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"]
        return ["runAsUser": 0, "runAsGroup": 0, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "privileged": false, "capabilities": ["drop": ["ALL"], "add": .array(add)]]
    }

    func podManifest(for volume: ClaimVolume, readOnly: Bool) -> KubeObject {
        let suffix = String((0..<5).map { _ in "bcdfghjklmnpqrstvwxz2456789".randomElement()! })
        let base = "cairn-mover-" + volume.claim.prefix(40).trimmingCharacters(in: CharacterSet(charactersIn: "-."))
        var pod = KubeObject(apiVersion: "v1", kind: "Pod", name: "\(base)-\(suffix)", namespace: volume.namespace)
        pod.labels = [Self.label: readOnly ? "backup" : "restore", "app.kubernetes.io/managed-by": "cairn"]
        var spec: JSONValue = [
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            // What the workload's pods tolerate (to reach the node they use), nothing more.
            "tolerations": volume.tolerations ?? [],
            "securityContext": ["seccompProfile": ["type": "RuntimeDefault"]],
            "containers": [[
                "name": "mover",
                "image": .string(image),
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/cairn", "mover", "idle"],
                "securityContext": Self.securityContext(readOnly: readOnly),
                "volumeMounts": [["name": "data", "mountPath": "/data", "readOnly": .bool(readOnly)],
                                 ["name": "tmp", "mountPath": "/tmp"]],
                "resources": ["requests": ["cpu": "100m", "memory": "64Mi"], "limits": ["memory": "512Mi"]],
            ]],
            "volumes": [["name": "data", "persistentVolumeClaim": ["claimName": .string(volume.source ?? volume.claim), "readOnly": .bool(readOnly)]],
                        ["name": "tmp", "emptyDir": ["sizeLimit": "64Mi"]]],
        ]
        if let node = volume.node {
            spec["nodeName"] = .string(node)
        } else if let placement = volume.placement {
            spec["nodeSelector"] = placement["nodeSelector"]
            spec["affinity"] = placement["affinity"]
            if volume.tolerations == nil, let tolerations = placement["tolerations"] { spec["tolerations"] = tolerations }
        }
        pod["spec"] = spec
        return pod
    }

    /// Runs `body` with the name of a running mover pod for the claim, then deletes the pod.
    func withMover<T: Sendable>(for volume: ClaimVolume, readOnly: Bool,
                                _ body: @Sendable (String) async throws -> T) async throws -> T {
        let created = try await client.create(podManifest(for: volume, readOnly: readOnly), namespace: volume.namespace)
        let name = created.name
        do {
            try await waitRunning(name, volume: volume)
            let result = try await body(name)
            await remove(name, namespace: volume.namespace)
            return result
        } catch {
            await remove(name, namespace: volume.namespace)
            throw error
        }
    }

    /// Deletes the mover pod, also when the transfer was cancelled (another volume of the backup failed).
    func remove(_ name: String, namespace: String) async {
        let client = self.client
        await Concurrent.uncancelled {
            _ = try? await client.delete(Pod.self, name, namespace: namespace, options: DeleteOptions(gracePeriodSeconds: 0))
        }
    }

    func waitRunning(_ name: String, volume: ClaimVolume) async throws {
        let deadline = ContinuousClock.now + startTimeout
        var last = "it was not scheduled"
        while ContinuousClock.now < deadline {
            let pod = try await client.get(Pod.self, name, namespace: volume.namespace)
            switch pod.phase {
            case "Running":
                return
            case "Failed", "Succeeded":
                throw ProtectionError(.moverFailed, "the mover pod \(volume.namespace)/\(name) stopped (\(pod.phase!)) before it could be used")
            default:
                let waiting = (pod.object["status", "containerStatuses"]?.array ?? []).compactMap { $0["state", "waiting"] }.first
                if let reason = waiting?["reason"]?.string {
                    last = "\(reason): \(waiting?["message"]?.string ?? "")"
                    if ["ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"].contains(reason) {
                        throw ProtectionError(.moverImageUnusable, "the mover image \(image) cannot be used on node \(pod.nodeName ?? "?") (\(reason)); import it on the node (scripts/build-image on the local cluster) or choose another mover image")
                    }
                } else if let condition = (pod.object["status", "conditions"]?.array ?? [])
                    .first(where: { $0["type"]?.string == "PodScheduled" && $0["status"]?.string == "False" }) {
                    last = condition["message"]?.string ?? "not scheduled"
                }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw ProtectionError(.moverFailed, "the mover pod for claim \(volume.namespace)/\(volume.claim) did not start within \(startTimeout): \(last)")
    }
}
