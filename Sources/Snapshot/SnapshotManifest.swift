import Foundation
import Repository

/// Counters of one backup run.
public struct BackupSummary: Codable, Sendable, Equatable {
    public var filesNew = 0
    public var filesChanged = 0
    public var filesUnmodified = 0
    public var directories = 0
    public var otherEntries = 0
    public var bytesRead = 0
    public var bytesTotal = 0
    public var bytesAdded = 0
    public var blobsAdded = 0
    public var errors = 0
    public var seconds = 0.0

    public init() {}
}

/// A snapshot: the encrypted `snapshots/<id>` file pointing at a tree.
public struct SnapshotManifest: Codable, Sendable {
    public var version = 1
    public var time: Date
    public var hostname: String
    public var username: String
    /// The absolute paths backed up; the root tree holds one node per path, named by its last component.
    public var paths: [String]
    public var tree: BlobID
    public var parent: String?
    public var tags: [String]
    public var program: String
    public var summary: BackupSummary?
    /// For a copy (`SnapshotCopier`): the snapshot it copies and the repository that holds that one.
    public var original: String?
    public var originalRepository: String?

    /// The file name (SHA-256 of the encrypted file); not stored inside.
    public var id: String = ""

    enum CodingKeys: String, CodingKey {
        case version, time, hostname, username, paths, tree, parent, tags, program, summary, original, originalRepository
    }

    public init(time: Date, hostname: String, username: String, paths: [String], tree: BlobID, parent: String? = nil,
                tags: [String], program: String, summary: BackupSummary? = nil) {
        self.time = time
        self.hostname = hostname
        self.username = username
        self.paths = paths
        self.tree = tree
        self.parent = parent
        self.tags = tags
        self.program = program
        self.summary = summary
    }

    public var shortID: String { String(id.prefix(8)) }
}

/// Reading and writing snapshot manifests.
public enum SnapshotFiles {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
                ?? (try? Date(text, strategy: Date.ISO8601FormatStyle())) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad date"))
            }
            return date
        }
        return d
    }()

    public static func save(_ manifest: SnapshotManifest, to repository: Repository) async throws -> String {
        try await repository.saveFile(encoder.encode(manifest), kind: .snapshots).hex
    }

    public static func load(_ id: String, from repository: Repository) async throws -> SnapshotManifest {
        let data = try await repository.loadFile(.snapshots, name: id)
        guard var manifest = try? decoder.decode(SnapshotManifest.self, from: data) else {
            throw RepositoryError(.corrupt, "snapshot \(id.prefix(8)) does not decode", location: "snapshots/\(id)")
        }
        manifest.id = id
        return manifest
    }

    /// All snapshots, oldest first. Snapshots that cannot be read are returned as errors, not thrown.
    public static func all(in repository: Repository) async throws -> (snapshots: [SnapshotManifest], errors: [String]) {
        var snapshots: [SnapshotManifest] = []
        var errors: [String] = []
        for name in try await repository.listFiles(.snapshots) {
            do {
                snapshots.append(try await load(name, from: repository))
            } catch {
                errors.append("snapshots/\(name): \(error)")
            }
        }
        return (snapshots.sorted { ($0.time, $0.id) < ($1.time, $1.id) }, errors)
    }

    /// Finds a snapshot by ID prefix, or `latest`.
    public static func find(_ reference: String, in repository: Repository) async throws -> SnapshotManifest {
        if reference == "latest" {
            let (all, _) = try await all(in: repository)
            guard let last = all.last else { throw SnapshotError(.notFound, "the repository has no snapshots") }
            return last
        }
        let id = try match(reference, among: try await repository.listFiles(.snapshots), what: "snapshot")
        return try await load(id, from: repository)
    }

    /// The one rule for naming a snapshot by its ID: a prefix that matches exactly one of `ids`.
    /// `what` names the kind in the error ("snapshot", "restore point").
    public static func match(_ reference: String, among ids: [String], what: String) throws(SnapshotError) -> String {
        let prefix = reference.lowercased()
        let matches = prefix.isEmpty ? [] : ids.filter { $0.hasPrefix(prefix) }
        switch matches.count {
        case 1: return matches[0]
        case 0: throw SnapshotError(.notFound, "no \(what) \(reference)", path: reference)
        default: throw SnapshotError(.ambiguous, "\(reference) matches \(matches.count) \(what)s; give more of the ID",
                                     path: reference)
        }
    }
}
