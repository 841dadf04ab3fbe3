import Foundation
import Kube
import Repository
import Snapshot

/// A restore point: one repository snapshot holding everything needed to bring an application back.
///
/// Layout of its tree (documented in docs/repository-format.md, "Restore points"):
/// - `restorepoint.json` — `RestorePoint.Metadata`: the application, time, counts, Cairn version,
///   warnings and what was left out;
/// - `objects/<group>/<Kind>/<namespace>/<first name>.jsonl` — the objects, exactly as the API server
///   returned them, several to a file (`ObjectGroup`: one object's compact JSON a line, a file named after its
///   first object); group `core` for the core group, namespace `_cluster` for cluster-scoped objects.
///   Cleaning happens at restore time, so nothing is lost at capture. Restore points written before
///   2026-12-08 hold one object a file, `<name>.json`, and still read;
/// - `volumes/<claim>/…` — the files of each claim's volume (written by the volume movers).
///
/// The snapshot carries the tags `cairn.dev/restorepoint` and `namespace=<namespace>`, and the path
/// `/restorepoints/<namespace>`, so `cairn snapshots` shows restore points next to file backups.
public enum RestorePoint {
    public static let tag = "cairn.dev/restorepoint"
    /// The tag naming the namespace a restore point was taken of.
    public static func namespaceTag(_ namespace: String) -> String { "namespace=\(namespace)" }
    /// The tag key of the namespace's UID.
    public static let uidTag = "namespace-uid"
    /// The host name of every restore point's snapshot.
    public static let hostname = "kubernetes"

    /// The UID of the namespace a restore point was taken of (nil for restore points older than the tag).
    public static func namespaceUID(of snapshot: SnapshotManifest) -> String? {
        snapshot.tags.first { $0.hasPrefix(uidTag + "=") }.map { String($0.dropFirst(uidTag.count + 1)) }
    }

    public struct Metadata: Codable, Sendable, Equatable {
        public var namespace: String
        public var labelSelector: String?
        public var time: Date
        public var cairnVersion: String
        public var objects: Int
        public var objectsByKind: [String: Int]
        public var skipped: [String]
        public var warnings: [String]
        /// The volumes stored under `volumes/`, how they were read and how much.
        public var volumes: [VolumeTransfer]?
        /// Workloads scaled to zero while the volumes were read (`--quiesce scale`).
        public var quiesced: [String]?
        /// The blueprint each workload ran (`Kind/name` → blueprint); the definitions are under `blueprints/`.
        public var blueprints: [String: String]?
        /// Every blueprint and hook phase that ran, how it ended.
        public var phases: [PhaseRecord]?
        /// Artifacts under `artifacts/`: path → bytes.
        public var artifacts: [String: UInt64]?
        /// Claims left out of the volume capture because their workload's blueprint holds the data
        /// (`volumes: skip`): a restore gives them new, empty volumes.
        public var blueprintClaims: [String]?
        /// Who wrote each namespaced blueprint (blueprint name → their user info as JSON): its restore phases
        /// run as them.
        public var blueprintAuthors: [String: String]?
        /// Whom the other blueprints' and the hooks' phases ran as (their user info as JSON; the requester of a
        /// controller's backup): the blueprints' `delete` actions run as them too (`BlueprintDeletion`).
        public var blueprintRequester: String?
        /// The consistency group's members and fence window.
        public var consistencyGroup: ConsistencyPlan.GroupReport?
        /// The CSI snapshots the volumes were read from: which, when each was taken, how far apart.
        public var volumeSnapshots: SnapshotVolumeAccess.Report?
    }

    /// What blueprints and hooks added to a restore point.
    public struct Consistency: Sendable {
        public var plan: ConsistencyPlan
        public var result: ConsistencyPlan.Result
        public var skippedClaims: Set<String>
        public var authors: [String: String]
        public var requester: String?

        public init(plan: ConsistencyPlan, result: ConsistencyPlan.Result, skippedClaims: Set<String>, authors: [String: String] = [:],
                    requester: String? = nil) {
            self.plan = plan
            self.result = result
            self.skippedClaims = skippedClaims
            self.authors = authors
            self.requester = requester
        }
    }

    /// Where the definition of the blueprint a workload ran is stored.
    static func blueprintPath(_ workload: WorkloadRef) -> String { "blueprints/\(workload.kind)-\(workload.name).json" }

    /// What `list` shows.
    public struct Summary: Sendable {
        public var id: String
        public var namespace: String
        public var time: Date
        public var snapshot: SnapshotManifest
    }

    static func path(of object: KubeObject) -> String {
        let group = object.group.isEmpty ? "core" : object.group
        let namespace = object.namespace ?? "_cluster"
        return "objects/\(group)/\(object.kind)/\(namespace)/\(object.name).json"
    }

    /// How a restore point's objects are stored: several to a file, so the repository's index, the trees and
    /// what a backup or restore holds grow with the number of files, not of objects (a namespace of 100,000
    /// objects makes about 1,600 files).
    ///
    /// A file (`<first name>.jsonl`) holds objects of one kind in one namespace, in the order they were listed
    /// (by name), each object's compact JSON (keys sorted, no line breaks) followed by a line feed. A file ends
    /// after an object whose name hashes (FNV-1a, 64 bits) to 0 modulo `spread`, or once it reaches
    /// `limit` bytes. The ends depend on the names, not on what came before, so objects that did not change
    /// give the same files, and the same blobs, on the next backup: a changed, added or removed object changes
    /// only its own file (and the next one, when it removes an end or one was cut at `limit`).
    public enum ObjectGroup {
        /// One file ends every `spread` objects on average.
        public static let spread: UInt64 = 64
        /// A file ends once it holds this many bytes or more (so a file holds at most one object past it).
        public static let limit = 512 << 10
        public static let suffix = ".jsonl"

        /// Whether a file ends after the object named `name`, the file now `bytes` long.
        static func endsAfter(_ name: String, bytes: Int) -> Bool {
            guard bytes < limit else { return true }
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in name.utf8 {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
            return hash % spread == 0
        }

        /// Each object of a file, in order; a line that is not an object is reported with its file and line.
        static func forEach(in data: Data, file: String, snapshot: String, _ body: (KubeObject) async throws -> Void) async throws {
            var start = data.startIndex
            var line = 0
            while start < data.endIndex {
                let end = data[start...].firstIndex(of: 0x0A) ?? data.endIndex
                line += 1
                let object: KubeObject
                do {
                    object = KubeObject(try JSONValue(parsing: data[start..<end]))
                } catch {
                    throw RepositoryError.corrupt("restore point", snapshot, "objects file \(file), line \(line): \(error)")
                }
                guard object.json.object != nil else {
                    throw RepositoryError.corrupt("restore point", snapshot, "objects file \(file), line \(line): not a JSON object")
                }
                try await body(object)
                start = end < data.endIndex ? data.index(after: end) : end
            }
        }
    }

    /// The objects of a restore point, stored in the repository as they are captured: a file of objects
    /// (`ObjectGroup`) as soon as it is complete, each kind's directory once its list is complete. What it holds
    /// is the file being filled for each kind still being listed (at most `ObjectGroup.limit` bytes), a node
    /// per file of those kinds and a node per kind done, never all the objects.
    public actor ObjectWriter: CaptureSink {
        /// A file of objects being filled.
        private struct Pending {
            var first: String
            var data = Data()
        }

        let repository: Repository
        /// The restore point's tree so far: `objects/…`.
        private var tree: MemoryTree
        /// The file being filled in each directory (`objects/<group>/<Kind>/<namespace>`).
        private var pending: [String: Pending] = [:]

        public init(repository: Repository, time: Date = Date()) {
            self.repository = repository
            tree = MemoryTree(time: time)
        }

        static func directory(group: String, kind: String) -> String { "objects/\(group.isEmpty ? "core" : group)/\(kind)" }

        public func add(_ object: KubeObject) async throws {
            let directory = Self.directory(group: object.group, kind: object.kind) + "/" + (object.namespace ?? "_cluster")
            // Taken out while it is stored, so nothing else appends to it meanwhile.
            var file = pending.removeValue(forKey: directory) ?? Pending(first: object.name)
            file.data.append(contentsOf: object.json.serialized())
            file.data.append(0x0A)
            if ObjectGroup.endsAfter(object.name, bytes: file.data.count) {
                try await store(file, in: directory)
            } else {
                pending[directory] = file
            }
        }

        private func store(_ file: Pending, in directory: String) async throws {
            let name = file.first + ObjectGroup.suffix
            let node = try await tree.storedFile(named: name, file.data, in: repository)
            try tree.addExisting(directory + "/" + name, node)
        }

        /// Stores the files still being filled under `path` (every one when nil).
        private func storePending(under path: String?) async throws {
            for directory in pending.keys.filter({ path == nil || $0.hasPrefix(path! + "/") }).sorted() {
                if let file = pending.removeValue(forKey: directory) { try await store(file, in: directory) }
            }
        }

        public func finished(group: String, kind: String) async throws {
            let path = Self.directory(group: group, kind: kind)
            try await storePending(under: path)
            if let node = try await tree.storedDirectory(at: path, in: repository) { try tree.seal(path, with: node) }
        }

        public func discard(group: String, kind: String) throws {
            let path = Self.directory(group: group, kind: kind)
            pending = pending.filter { !$0.key.hasPrefix(path + "/") }
            try tree.remove(path)
        }

        /// The tree of every object added, each file stored.
        public func complete() async throws -> MemoryTree {
            try await storePending(under: nil)
            return tree
        }
    }

    /// Writes a capture (its objects already stored by `objects`, the sink it was captured into, and any
    /// volume trees already in the repository) as a restore point.
    /// - Parameter namespaceUID: the namespace's UID, tagged `namespace-uid=`: restore points belong to the
    ///   namespace's identity, not its name (a namespace re-created under the same name is another one).
    public static func write(_ capture: ApplicationCapture.Result, objects: ObjectWriter, namespace: String, namespaceUID: String? = nil,
                             labelSelector: String? = nil,
                             volumes: [String: Node] = [:], transfers: [VolumeTransfer] = [],
                             volumeSnapshots: SnapshotVolumeAccess.Report? = nil, tags: [String] = [],
                             quiesced: [String] = [], consistency: Consistency? = nil, to repository: Repository,
                             since mark: Repository.WriteMark? = nil,
                             time: Date = Date()) async throws -> SnapshotManifest {
        var tree = try await objects.complete()
        for (claim, node) in volumes.sorted(by: { $0.key < $1.key }) {
            try tree.addExisting("volumes/\(claim)", node)
        }
        var metadata = Metadata(namespace: namespace, labelSelector: labelSelector, time: time,
                                cairnVersion: CairnVersion.current, objects: capture.count,
                                objectsByKind: capture.byKind, skipped: capture.skipped.map { "\($0.object): \($0.reason)" },
                                warnings: capture.warnings, volumes: transfers, quiesced: quiesced)
        metadata.volumeSnapshots = volumeSnapshots
        if let consistency, !consistency.plan.isEmpty {
            for (path, node) in consistency.result.artifacts.sorted(by: { $0.key < $1.key }) { try tree.addExisting(path, node) }
            var names: [String: String] = [:]
            for entry in consistency.plan.bound {
                names[entry.workload.description] = entry.blueprint.name
                let document: JSONValue = ["apiVersion": "cairn.dev/v1alpha1", "kind": "Blueprint",
                                           "metadata": ["name": .string(entry.blueprint.name)], "spec": entry.blueprint.source]
                try tree.addFile(blueprintPath(entry.workload), try document.serializedData())
            }
            metadata.blueprints = names.isEmpty ? nil : names
            metadata.phases = consistency.result.records
            metadata.artifacts = consistency.result.artifacts.mapValues(\.size)
            metadata.blueprintClaims = consistency.skippedClaims.isEmpty ? nil : consistency.skippedClaims.sorted()
            let authors = consistency.authors.filter { names.values.contains($0.key) }
            metadata.blueprintAuthors = authors.isEmpty ? nil : authors
            metadata.blueprintRequester = names.isEmpty ? nil : consistency.requester
            metadata.consistencyGroup = consistency.result.group
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.dateEncodingStrategy = .iso8601
        try tree.addFile("restorepoint.json", try encoder.encode(metadata))
        let written = try await tree.write(to: repository)
        // Data and index first, the snapshot that refers to them last.
        try await repository.flush(since: mark)
        // One host for every restore point, whichever machine or controller pod wrote it: `cairn forget`
        // groups snapshots by host and paths, and an application's restore points are one series.
        var manifest = SnapshotManifest(time: time, hostname: hostname, username: "",
                                        paths: ["/restorepoints/\(namespace)"], tree: written.tree, parent: nil,
                                        tags: [tag, namespaceTag(namespace)] + (namespaceUID.map { ["\(uidTag)=\($0)"] } ?? []) + tags,
                                        program: "cairn \(CairnVersion.current)", summary: nil)
        manifest.id = try await SnapshotFiles.save(manifest, to: repository)
        return manifest
    }

    /// Restore points in a repository, oldest first, optionally of one namespace.
    public static func list(in repository: Repository, namespace: String? = nil) async throws -> [Summary] {
        try await SnapshotFiles.all(in: repository).snapshots.compactMap { snapshot in
            guard snapshot.tags.contains(tag),
                  let ns = snapshot.tags.first(where: { $0.hasPrefix("namespace=") })?.dropFirst(10),
                  namespace == nil || namespace == String(ns)
            else { return nil }
            return Summary(id: snapshot.id, namespace: String(ns), time: snapshot.time, snapshot: snapshot)
        }.sorted { $0.time < $1.time }
    }

    /// Finds a restore point by ID prefix (the rule of `SnapshotFiles.match`), or by a namespace's name for
    /// its newest restore point.
    public static func find(_ reference: String, in repository: Repository) async throws -> SnapshotManifest {
        let all = try await list(in: repository)
        let byID = Result { () throws(SnapshotError) in
            try SnapshotFiles.match(reference, among: all.map(\.id), what: "restore point")
        }
        if reference.count >= 4, case .success(let id) = byID { return all.first { $0.id == id }!.snapshot }
        if let newest = all.last(where: { $0.namespace == reference }) { return newest.snapshot }
        switch byID {
        case .success(let id): return all.first { $0.id == id }!.snapshot
        case .failure(let error) where error.code == .notFound:
            throw SnapshotError(.notFound, "no restore point \(reference): give an ID prefix, or a namespace for its newest",
                                path: reference)
        case .failure(let error): throw error
        }
    }

    /// Every volume node of a restore point, by claim.
    public static func volumes(of snapshot: SnapshotManifest, in repository: Repository) async throws -> [String: Node] {
        let root = try await repository.loadTree(snapshot.tree)
        guard let volumes = root.node(named: "volumes"), let subtree = volumes.subtree else { return [:] }
        return Dictionary(try await repository.loadTree(subtree).nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The blueprints a restore point's workloads ran, as stored with it, and their artifacts by phase.
    public static func consistency(of snapshot: SnapshotManifest, metadata: Metadata, in repository: Repository) async throws
        -> [(workload: WorkloadRef, blueprint: Blueprint, artifacts: [String: Node])]
    {
        guard let names = metadata.blueprints, !names.isEmpty else { return [] }
        let root = try await repository.loadTree(snapshot.tree)
        func directory(_ path: [String]) async throws -> [Node] {
            var nodes = root.nodes
            for name in path {
                guard let subtree = nodes.first(where: { $0.name == name })?.subtree else { return [] }
                nodes = try await repository.loadTree(subtree).nodes
            }
            return nodes
        }
        var result: [(WorkloadRef, Blueprint, [String: Node])] = []
        for (key, name) in names.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let workload = WorkloadRef(kind: parts[0], name: parts[1])
            let file = "\(workload.kind)-\(workload.name).json"
            guard let node = try await directory(["blueprints"]).first(where: { $0.name == file }) else {
                throw RepositoryError.corrupt("restore point", snapshot.shortID, "blueprints/\(file) is missing")
            }
            let blueprint: Blueprint
            do {
                blueprint = try Blueprint(json: try JSONValue(parsing: try await content(of: node, repository)), name: name)
            } catch {
                throw RepositoryError.corrupt("restore point", snapshot.shortID, "blueprints/\(file) cannot be read: \(error)")
            }
            let artifacts = try await directory(["artifacts", "\(workload.kind)-\(workload.name)"])
            result.append((workload, blueprint, Dictionary(artifacts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })))
        }
        return result
    }

    /// The metadata of a restore point (without reading its objects).
    public static func metadata(_ snapshot: SnapshotManifest, from repository: Repository) async throws -> Metadata {
        guard snapshot.tags.contains(tag) else {
            throw ProtectionError(.notARestorePoint, "snapshot \(snapshot.shortID) is not a restore point")
        }
        do {
            return try await metadata(root: try await repository.loadTree(snapshot.tree), snapshot, repository)
        } catch let error as RepositoryError where error.code == .missing {
            // The index in memory may be older than the snapshot (written since by another process, or
            // before this one started): read it again, once.
            try await repository.loadIndex()
            return try await metadata(root: try await repository.loadTree(snapshot.tree), snapshot, repository)
        }
    }

    /// The metadata and objects of a restore point, every object in memory (in restore order): for small
    /// restore points and tests. A restore reads them a kind at a time (`objects`).
    public static func read(_ snapshot: SnapshotManifest, from repository: Repository) async throws
        -> (metadata: Metadata, objects: [KubeObject])
    {
        let (metadata, stored) = try await objects(snapshot, from: repository)
        var objects: [KubeObject] = []
        try await stored.forEach(stored.kinds) { objects.append($0) }
        return (metadata, RestoreOrder.tiers(objects).flatMap(\.objects))
    }

    /// The metadata of a restore point and its objects, to be read a kind at a time.
    public static func objects(_ snapshot: SnapshotManifest, from repository: Repository) async throws
        -> (metadata: Metadata, objects: StoredObjects)
    {
        guard snapshot.tags.contains(tag) else {
            throw ProtectionError(.notARestorePoint, "snapshot \(snapshot.shortID) is not a restore point")
        }
        let root = try await repository.loadTree(snapshot.tree)
        let metadata = try await metadata(root: root, snapshot, repository)
        return (metadata, try await StoredObjects(root: root, snapshot: snapshot, repository: repository))
    }

    /// The objects of a restore point (`objects/<group>/<Kind>/<namespace>/<name>.json`), read a kind at a
    /// time: what a reader holds is one kind's listing in one namespace and a batch of objects, never all.
    public struct StoredObjects: Sendable {
        public struct Kind: Sendable {
            public var group: String
            public var kind: String
            public var tier: Int
            let tree: BlobID
        }

        /// Every kind stored, in restore order (tier, kind, group).
        public let kinds: [Kind]
        let repository: Repository
        let snapshot: String
        /// Files of objects whose blobs are read together (by pack place): at most this many, and as many as
        /// reach `batchBytes`.
        static let batch = 256
        static let batchBytes: UInt64 = 4 << 20

        init(root: Tree, snapshot: SnapshotManifest, repository: Repository) async throws {
            self.repository = repository
            self.snapshot = snapshot.shortID
            var kinds: [Kind] = []
            if let objects = root.node(named: "objects")?.subtree {
                for groupNode in try await repository.loadTree(objects).nodes where groupNode.type == .dir {
                    guard let groupTree = groupNode.subtree else { continue }
                    let group = groupNode.name == "core" ? "" : groupNode.name
                    for kindNode in try await repository.loadTree(groupTree).nodes where kindNode.type == .dir {
                        guard let tree = kindNode.subtree else { continue }
                        kinds.append(Kind(group: group, kind: kindNode.name,
                                          tier: RestoreOrder.tier(group: group, kind: kindNode.name), tree: tree))
                    }
                }
            }
            self.kinds = kinds.sorted { ($0.tier, $0.kind, $0.group) < ($1.tier, $1.kind, $1.group) }
        }

        /// The objects of `selected`, handed to `body` one at a time: kind by kind, namespace by namespace, by
        /// name; the blobs of several files read together. Reads files of objects (`ObjectGroup`) and, from
        /// older restore points, files of one object (`<name>.json`).
        public func forEach(_ selected: [Kind], _ body: (KubeObject) async throws -> Void) async throws {
            for kind in selected {
                for namespace in try await repository.loadTree(kind.tree).nodes where namespace.type == .dir {
                    guard let tree = namespace.subtree else { continue }
                    let files = try await repository.loadTree(tree).nodes.filter { $0.type == .file }
                    var start = 0
                    while start < files.count {
                        var end = start
                        var bytes: UInt64 = 0
                        repeat {
                            bytes += files[end].size
                            end += 1
                        } while end < files.count && end - start < Self.batch && bytes < Self.batchBytes
                        let nodes = files[start..<end]
                        start = end
                        let loaded = try await repository.loadBlobsByPlace(nodes.flatMap { $0.content ?? [] })
                        for node in nodes {
                            var data = Data()
                            for id in node.content ?? [] {
                                switch loaded[id] {
                                case .success(let part)?: data.append(part)
                                case .failure(let error)?: throw error
                                case nil: throw RepositoryError.corrupt("restore point", snapshot, "objects file \(node.name): blob \(id.short) was not read")
                                }
                            }
                            if node.name.hasSuffix(ObjectGroup.suffix) {
                                try await ObjectGroup.forEach(in: data, file: node.name, snapshot: snapshot, body)
                                continue
                            }
                            let object: KubeObject
                            do {
                                object = KubeObject(try JSONValue(parsing: data))
                            } catch {
                                throw RepositoryError.corrupt("restore point", snapshot, "object \(node.name): \(error)")
                            }
                            try await body(object)
                        }
                    }
                }
            }
        }
    }

    static func metadata(root: Tree, _ snapshot: SnapshotManifest, _ repository: Repository) async throws -> Metadata {
        guard let metaNode = root.node(named: "restorepoint.json") else {
            throw RepositoryError.corrupt("restore point", snapshot.shortID, "restorepoint.json is missing")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let metadata: Metadata
        do {
            metadata = try decoder.decode(Metadata.self, from: try await content(of: metaNode, repository))
        } catch let error as RepositoryError {
            throw error
        } catch {
            throw RepositoryError.corrupt("restore point", snapshot.shortID, "restorepoint.json cannot be read: \(error)")
        }
        return metadata
    }

    static func content(of node: Node, _ repository: Repository) async throws -> Data {
        var data = Data()
        for id in node.content ?? [] { data.append(try await repository.loadBlob(id)) }
        return data
    }
}
