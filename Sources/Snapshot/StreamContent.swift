import Concurrent
import Foundation
import Repository

/// One file's content as a stream of bytes: chunked and stored as it arrives (a few chunks in flight,
/// never the whole in memory), and read back piece by piece. The volume mover's files
/// (`StreamArchiver`) and blueprint artifacts (a dump's stdout) are stored this way.
public enum StreamContent {
    public enum Piece: Sendable {
        case bytes([UInt8])
        /// Zero bytes (a hole of a sparse file).
        case zeros(Int)
    }

    public struct Stored: Sendable {
        public var content: [BlobID]
        public var size: UInt64
        /// Bytes new to the repository (after deduplication, before compression).
        public var added: Int
    }

    /// Stores what `next` returns until it returns nil.
    public static func store(in repository: Repository, _ next: () async throws -> Piece?) async throws -> Stored {
        var chunker = StreamChunker(chunker: repository.chunker)
        var ids: [BlobID] = []
        var added = 0
        try await Concurrent.ordered(width: 4, produce: { emit in
            while let piece = try await next() {
                let chunks: [Data]
                switch piece {
                case .bytes(let bytes): chunks = bytes.withUnsafeBytes { chunker.append($0) }
                case .zeros(let count): chunks = chunker.appendZeros(count)
                }
                for chunk in chunks { try await emit(chunk) }
            }
            for chunk in chunker.finish() { try await emit(chunk) }
        }, { chunk in
            try await repository.saveBlob(.data, chunk)
        }, collect: { saved in
            ids.append(saved.id)
            added += saved.added
        })
        return Stored(content: ids, size: UInt64(chunker.bytesIn), added: added)
    }

    /// A file node holding stored content.
    public static func fileNode(named name: String, _ stored: Stored, time: Date = Date()) -> Node {
        let ns = Int64(time.timeIntervalSince1970 * 1e9)
        var node = Node(name: name, type: .file, mode: 0o600, uid: 0, gid: 0, mtime: ns, ctime: ns, inode: 0,
                        device: 0, links: 1, size: stored.size)
        node.content = stored.content
        return node
    }

    /// Hands a file node's content to `body` blob by blob, the next blob read while the current one is
    /// handled.
    public static func read(_ node: Node, from repository: Repository,
                            _ body: (Data) async throws -> Void) async throws {
        let ids = node.content ?? []
        try await Concurrent.ordered(width: 2, produce: { emit in
            for id in ids { try await emit(id) }
        }, { id in
            try await repository.loadBlob(id)
        }, collect: body)
    }
}
