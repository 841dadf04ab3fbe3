import Concurrent
import Foundation
import Kube
import Repository
import Snapshot

/// Volume access through CSI snapshots (`snapshot.storage.k8s.io/v1`): every claim of an application whose
/// CSI driver has a VolumeSnapshotClass is snapshotted at once (`take`, inside the application's fence when it
/// has one), and the snapshots' data is read afterwards, while the application runs on: each through a
/// temporary claim made from its snapshot (`dataSource`) and a mover pod (`export`). The temporary claims and,
/// unless they are kept, the VolumeSnapshots are removed whatever happened.
///
/// Everything here is Cairn's own volume work, done with Cairn's identity (like mover pods); every object
/// made carries `label` = the backup's operation id, so a successor can remove what a killed backup left.
public struct SnapshotVolumeAccess: Sendable {
    public static let snapshots = APIResource(group: "snapshot.storage.k8s.io", version: "v1", name: "volumesnapshots",
                                              kind: "VolumeSnapshot", namespaced: true)
    public static let classes = APIResource(group: "snapshot.storage.k8s.io", version: "v1", name: "volumesnapshotclasses",
                                            kind: "VolumeSnapshotClass", namespaced: false)
    /// On VolumeSnapshots and temporary claims: the operation that made them.
    public static let label = "cairn.dev/snapshot-for"
    /// On VolumeSnapshots: the claim they are of.
    public static let claimLabel = "cairn.dev/snapshot-of"
    /// On VolumeSnapshots kept as a restore point's local tier: the first 32 hex digits of its ID (in place of
    /// `label`, so the operation's sweep leaves them).
    public static let restorePointLabel = "cairn.dev/restorepoint-id"
    /// The default-class annotation of VolumeSnapshotClasses.
    static let defaultClassAnnotation = "snapshot.storage.kubernetes.io/is-default-class"

    public let client: KubeClient
    public let repository: Repository
    public let moverImage: String
    /// Labels every object this access makes (`label`).
    public let operation: String
    /// How long snapshots may take to become ready to use.
    public var readyTimeout: Duration = .seconds(300)
    /// How many snapshots are read at once.
    public var exportWidth = 2

    public init(client: KubeClient, repository: Repository, moverImage: String, operation: String) {
        self.client = client
        self.repository = repository
        self.moverImage = moverImage
        self.operation = Self.labelValue(operation)
    }

    /// A label value (63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends) standing for `operation`.
    static func labelValue(_ operation: String) -> String {
        let cleaned = String(operation.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" }.prefix(63))
        return cleaned.trimmingCharacters(in: CharacterSet(charactersIn: "._-")).isEmpty ? "cairn" : cleaned
            .trimmingCharacters(in: CharacterSet(charactersIn: "._-"))
    }

    /// One claim's snapshot, once ready.
    public struct Taken: Sendable {
        public var claim: ClaimVolume
        public var snapshot: String
        public var className: String
        /// When the storage took it (`status.creationTime`).
        public var created: Date?
        /// The size a claim made from it needs (`status.restoreSize`, else the claim's own request).
        public var size: String
        public var storageClass: String?
    }

    /// What the restore point records about the snapshots of one backup.
    public struct Report: Codable, Sendable, Equatable {
        public struct Entry: Codable, Sendable, Equatable {
            public var claim: String
            public var volumeSnapshot: String
            public var volumeSnapshotClass: String
            public var creationTime: Date?
        }
        public var snapshots: [Entry]
        /// From the first snapshot's creation time to the last one's, as the storage reports them (seconds;
        /// the API gives whole seconds).
        public var spreadSeconds: Double
        /// From the first snapshot asked for until all were ready to use: how long the fence had to hold.
        public var takeSeconds: Double
        /// Claims read live instead, with why (no VolumeSnapshotClass for their driver).
        public var liveClaims: [String: String]?
        /// The VolumeSnapshots stay after the backup as the restore point's local tier (labelled
        /// `restorePointLabel`): a restore into the same namespace makes its claims from them.
        public var kept: Bool?
    }

    // MARK: - Which claims can be snapshotted

    /// The VolumeSnapshotClass for each claim whose volume a CSI driver provides and that driver has a class:
    /// the one annotated as default for the driver, else its only one (several, none default: the claim has
    /// none — which one to use is not Cairn's guess). Claims without one map to why, for the restore point.
    public static func classes(for claims: [ClaimVolume], client: KubeClient) async -> (classes: [String: String], reasons: [String: String]) {
        var found: [String: String] = [:]
        var reasons: [String: String] = [:]
        let all: [KubeObject]
        do {
            all = try await client.listAll(Self.classes).items
        } catch {
            for claim in claims { reasons[claim.claim] = "VolumeSnapshotClasses cannot be listed (\(error)); is the CSI snapshot controller installed?" }
            return ([:], reasons)
        }
        for claim in claims {
            guard let driver = claim.volume.flatMap({ PersistentVolume($0).csiDriver }) else {
                reasons[claim.claim] = "its volume is not provided by a CSI driver"
                continue
            }
            let candidates = all.filter { $0["driver"]?.string == driver }
            if let chosen = candidates.first(where: { $0.annotations[defaultClassAnnotation] == "true" }) ?? (candidates.count == 1 ? candidates.first : nil) {
                found[claim.claim] = chosen.name
            } else {
                reasons[claim.claim] = candidates.isEmpty ? "CSI driver \(driver) has no VolumeSnapshotClass"
                    : "CSI driver \(driver) has several VolumeSnapshotClasses and none is annotated \(defaultClassAnnotation)"
            }
        }
        return (found, reasons)
    }

    // MARK: - Taking snapshots

    /// Asks for a VolumeSnapshot of every claim at once and waits until all are ready to use. A snapshot
    /// that fails or is not ready within `readyTimeout` fails the whole step, and every snapshot of it is
    /// deleted.
    public func take(_ claims: [(ClaimVolume, String)], progress: @Sendable (String) -> Void) async throws -> (taken: [Taken], report: Report) {
        let start = Date()
        let client = self.client
        let operation = self.operation
        progress("taking \(claims.count) volume snapshot\(claims.count == 1 ? "" : "s") at once: \(claims.map(\.0.claim).joined(separator: ", "))")
        // Created together; each one's failure is kept so that the ones made can be removed.
        let created = try await Concurrent.map(claims, width: max(1, claims.count)) { pair -> Result<String, ProtectionError> in
            let (claim, className) = pair
            do {
                var object = KubeObject(apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot",
                                        name: "", namespace: claim.namespace)
                object.generateName = Self.baseName(claim.claim) + "-"
                object.labels = [Self.label: operation, Self.claimLabel: String(claim.claim.prefix(63)),
                                 "app.kubernetes.io/managed-by": "cairn"]
                object["spec"] = ["volumeSnapshotClassName": .string(className),
                                  "source": ["persistentVolumeClaimName": .string(claim.claim)]]
                return .success(try await client.create(object, as: Self.snapshots, namespace: claim.namespace).name)
            } catch {
                return .failure(ProtectionError(.snapshotFailed, "a VolumeSnapshot of claim \(claim.namespace)/\(claim.claim) could not be created: \(error)", cause: error))
            }
        }
        let names = created.compactMap { try? $0.get() }
        let failures: [ProtectionError] = created.compactMap { result in
            guard case .failure(let error) = result else { return nil }
            return error
        }
        if let failure = failures.first {
            await remove(names, namespace: claims.first?.0.namespace ?? "")
            throw failure
        }
        var taken: [Taken] = []
        do {
            taken = try await Concurrent.map(Array(zip(claims, names)), width: max(1, claims.count)) { pair in
                try await self.waitReady(pair.1, claim: pair.0.0, className: pair.0.1)
            }
        } catch {
            await remove(names, namespace: claims.first?.0.namespace ?? "")
            throw error
        }
        let times = taken.compactMap(\.created)
        let spread = (times.max() ?? start).timeIntervalSince(times.min() ?? start)
        let report = Report(snapshots: taken.map { .init(claim: $0.claim.claim, volumeSnapshot: $0.snapshot,
                                                          volumeSnapshotClass: $0.className, creationTime: $0.created) },
                            spreadSeconds: spread, takeSeconds: (Date().timeIntervalSince(start) * 1000).rounded() / 1000)
        progress("  \(taken.count) snapshot\(taken.count == 1 ? "" : "s") ready in \(String(format: "%.1f", report.takeSeconds)) s, taken within \(Int(spread)) s of each other")
        return (taken, report)
    }

    func waitReady(_ name: String, claim: ClaimVolume, className: String) async throws -> Taken {
        let deadline = ContinuousClock.now + readyTimeout
        var last = "no status yet"
        while ContinuousClock.now < deadline {
            let object = try await client.get(Self.snapshots, name, namespace: claim.namespace)
            if object["status", "readyToUse"]?.bool == true {
                let size = object["status", "restoreSize"]?.string
                    ?? claim.claimObject.flatMap { PersistentVolumeClaim($0).requestedStorage }
                    ?? claim.volume.flatMap { PersistentVolume($0).capacity } ?? "1Gi"
                return Taken(claim: claim, snapshot: name, className: className,
                             created: object["status", "creationTime"]?.string.flatMap(Timestamp.parse),
                             size: size,
                             storageClass: claim.claimObject.flatMap { PersistentVolumeClaim($0).storageClassName }
                                 ?? claim.volume.flatMap { PersistentVolume($0).storageClassName })
            }
            // The snapshot controller and sidecar retry what failed: an error is the last word only at the deadline.
            if let message = object["status", "error", "message"]?.string {
                last = "last error: \(message)"
            } else if object["status", "readyToUse"] != nil {
                last = "not ready to use yet"
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw ProtectionError(.snapshotFailed, "the VolumeSnapshot of claim \(claim.namespace)/\(claim.claim) was not ready to use within \(readyTimeout) (\(last)); is the CSI snapshotter of its driver running? Its snapshot was deleted")
    }

    // MARK: - Reading snapshots

    /// Reads one snapshot into the repository (a tree named after the original claim, like a live read):
    /// through a temporary claim made from it, mounted read-only by a mover pod; the claim is deleted
    /// afterwards whatever happened.
    public func export(_ taken: Taken, previous: Node?) async throws -> (Node, VolumeTransfer) {
        let start = Date()
        let namespace = taken.claim.namespace
        var claim = KubeObject(apiVersion: "v1", kind: "PersistentVolumeClaim", name: "", namespace: namespace)
        claim.generateName = Self.baseName(taken.claim.claim) + "-snap-"
        claim.labels = [Self.label: operation, Self.claimLabel: String(taken.claim.claim.prefix(63)),
                        "app.kubernetes.io/managed-by": "cairn"]
        var spec: JSONValue = [
            "accessModes": ["ReadWriteOnce"],
            "resources": ["requests": ["storage": .string(taken.size)]],
            "dataSource": ["apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": .string(taken.snapshot)],
        ]
        if let storageClass = taken.storageClass { spec["storageClassName"] = .string(storageClass) }
        claim["spec"] = spec
        let made: KubeObject
        do {
            made = try await client.create(claim, as: PersistentVolumeClaim.resource, namespace: namespace)
        } catch {
            throw ProtectionError(.snapshotFailed, "a claim from the VolumeSnapshot \(namespace)/\(taken.snapshot) could not be created: \(error)", cause: error)
        }
        do {
            var source = ClaimVolume(namespace: namespace, claim: taken.claim.claim, volume: nil)
            source.source = made.name
            source.tolerations = taken.claim.tolerations
            source.exclude = taken.claim.exclude
            var (node, transfer) = try await MoverVolumeAccess(client: client, repository: repository, image: moverImage)
                .backup(source, previous: previous)
            transfer.method = "snapshot"
            transfer.seconds = Date().timeIntervalSince(start)
            await removeClaims([made.name], namespace: namespace)
            return (node, transfer)
        } catch {
            await removeClaims([made.name], namespace: namespace)
            throw error
        }
    }

    // MARK: - Removing

    /// Deletes VolumeSnapshots (their contents follow by the class's deletion policy) and waits up to 30 s until
    /// they are gone. One still held by the snapshot controller's `volumesnapshot-as-source-protection` after
    /// the claims made from it are gone is touched (an annotation) every 3 s, so that the controller looks at
    /// it again rather than at its next resync.
    public func remove(_ names: [String], namespace: String) async {
        for name in names {
            _ = try? await client.delete(Self.snapshots, name, namespace: namespace)
        }
        let deadline = ContinuousClock.now + .seconds(30)
        var nudged = ContinuousClock.now
        for name in names {
            while ContinuousClock.now < deadline {
                guard let object = try? await client.get(Self.snapshots, name, namespace: namespace) else { break }
                let held = (object["metadata", "finalizers"]?.array ?? []).contains { $0.string?.hasSuffix("as-source-protection") == true }
                if held, ContinuousClock.now - nudged > .seconds(3) {
                    nudged = ContinuousClock.now
                    _ = try? await client.patch(Self.snapshots, name, namespace: namespace,
                                                .merge(["metadata": ["annotations": ["cairn.dev/deleted-after": .string(Timestamp.format(Date()))]]]))
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Deletes temporary claims and waits (up to a minute) until they are gone: the snapshot controller keeps a
    /// VolumeSnapshot that a claim is still being made from (finalizer `volumesnapshot-as-source-protection`)
    /// and may not look again for its resync period (15 minutes) — so snapshots are deleted only after.
    func removeClaims(_ names: [String], namespace: String) async {
        for name in names {
            _ = try? await client.delete(PersistentVolumeClaim.resource, name, namespace: namespace)
        }
        let deadline = ContinuousClock.now + .seconds(60)
        for name in names {
            while ContinuousClock.now < deadline, (try? await client.get(PersistentVolumeClaim.resource, name, namespace: namespace)) != nil {
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Removes every VolumeSnapshot and temporary claim this operation made in `namespace` (a backup killed
    /// half-way, run again): what is found is returned, for the record.
    public func removeLeftovers(namespace: String) async -> [String] {
        var options = ListOptions()
        options.labelSelector = "\(Self.label)=\(operation)"
        var removed: [String] = []
        if let claims = try? await client.listAll(PersistentVolumeClaim.resource, namespace: namespace, options: options).items
            .filter({ Self.madeByCairn($0, claim: true) }) {
            await removeClaims(claims.map(\.name), namespace: namespace)
            removed += claims.map { "PersistentVolumeClaim \($0.name)" }
        }
        if let snapshots = try? await client.listAll(Self.snapshots, namespace: namespace, options: options).items
            .filter({ Self.madeByCairn($0, claim: false) }) {
            await remove(snapshots.map(\.name), namespace: namespace)
            removed += snapshots.map { "VolumeSnapshot \($0.name)" }
        }
        return removed
    }

    /// Whether an object carrying one of Cairn's labels is one Cairn made: labels can be set by anyone who may
    /// patch an object, so Cairn (which deletes with its own identity) also asks what cannot be changed later —
    /// the name it generated (`cairn-…`) and, for a claim, that it was made from a VolumeSnapshot. A tenant's
    /// own claim or snapshot, labelled to look like Cairn's, is never deleted by Cairn.
    static func madeByCairn(_ object: KubeObject, claim: Bool) -> Bool {
        guard object.name.hasPrefix("cairn-") else { return false }
        if claim {
            return object["spec", "dataSource", "kind"]?.string == "VolumeSnapshot" && object.name.contains("-snap-")
        }
        return true
    }

    /// Hands the snapshots over to a restore point (its local tier): `label` is replaced by `restorePointLabel`.
    /// Returns the ones that could not be (the operation's sweep removes them; a restore reads the repository).
    public func keep(_ names: [String], namespace: String, restorePoint id: String) async -> [String] {
        var failed: [String] = []
        for name in names {
            do {
                _ = try await client.patch(Self.snapshots, name, namespace: namespace,
                                           .merge(["metadata": ["labels": [Self.label: .null,
                                                                           Self.restorePointLabel: .string(Self.restorePointValue(id))]]]))
            } catch {
                failed.append(name)
            }
        }
        return failed
    }

    static func restorePointValue(_ id: String) -> String { String(id.prefix(32)) }

    /// The local tier of a restore point: its VolumeSnapshots in `namespace`, by the claim they are of.
    public static func kept(restorePoint id: String, namespace: String, client: KubeClient) async throws -> [String: KubeObject] {
        var options = ListOptions()
        options.labelSelector = "\(restorePointLabel)=\(restorePointValue(id))"
        let items = try await client.listAll(snapshots, namespace: namespace, options: options).items
            .filter { madeByCairn($0, claim: false) }
        return Dictionary(items.compactMap { item in
            item["spec", "source", "persistentVolumeClaimName"]?.string.map { ($0, item) }
        }, uniquingKeysWith: { a, _ in a })
    }

    /// Deletes a restore point's local tier (its VolumeSnapshots; their contents follow): when the restore point
    /// is deleted, or falls out of a policy's `localSnapshots.keep`.
    public static func dropKept(restorePoint id: String, namespace: String, client: KubeClient) async throws -> Int {
        let found = try await kept(restorePoint: id, namespace: namespace, client: client)
        for object in found.values {
            do {
                _ = try await client.delete(snapshots, object.name, namespace: namespace)
            } catch let error as KubeError where error.code == .notFound {}
        }
        return found.count
    }

    /// `cairn-<claim>`, short enough for generated names.
    static func baseName(_ claim: String) -> String {
        "cairn-" + String(claim.prefix(40)).trimmingCharacters(in: CharacterSet(charactersIn: "-."))
    }
}
