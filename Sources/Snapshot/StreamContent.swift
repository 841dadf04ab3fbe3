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
        /// The bytes as they arrived, when they came compressed (`Encoding.zstd`, or `auto` that found zstd).
        public var compressedSize: UInt64?
    }

    /// How the bytes arrive: as they are, or zstd-compressed by their writer (a dump compressed in its pod, so
    /// that fewer bytes cross the API server) — stored decompressed either way, so that they deduplicate.
    public enum Encoding: String, Sendable {
        case identity
        case zstd
        /// zstd if the stream begins with a zstd frame's magic number, else as it is (a command that compresses
        /// when its container has zstd and writes plain output otherwise).
        case auto
    }

    /// The first four bytes of every zstd frame.
    static let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    /// Stores what `next` returns until it returns nil, decoded from `encoding` first. A zstd stream that
    /// is damaged or cut inside a frame (its writer stopped early) is an error (`SnapshotError`
    /// `.invalidArgument`), never a short artifact.
    public static func store(in repository: Repository, encoding: Encoding, _ next: () async throws -> [UInt8]?) async throws -> Stored {
        // The first bytes, enough to tell a zstd stream from plain output.
        var head: [UInt8] = []
        var ended = false
        if encoding == .auto {
            while head.count < zstdMagic.count {
                guard let piece = try await next() else { ended = true; break }
                head += piece
            }
        }
        let zstd = encoding == .zstd || (encoding == .auto && head.starts(with: zstdMagic))
        var pending: [UInt8]? = head.isEmpty ? nil : head
        func following() async throws -> [UInt8]? {
            if let first = pending {
                pending = nil
                return first
            }
            return ended ? nil : try await next()
        }
        guard zstd else {
            return try await store(in: repository) { try await following().map { .bytes($0) } }
        }
        let decoder = Zstd.StreamDecoder()
        var received: UInt64 = 0
        var stored = try await store(in: repository) {
            while let piece = try await following() {
                received += UInt64(piece.count)
                let plain: [UInt8]
                do {
                    plain = try decoder.decode(piece)
                } catch {
                    throw SnapshotError(.invalidArgument, "the output cannot be decompressed: \(error)")
                }
                if !plain.isEmpty { return .bytes(plain) }
            }
            guard decoder.atFrameEnd else {
                throw SnapshotError(.invalidArgument, "the zstd output ends inside a frame: its writer stopped before it finished")
            }
            return nil
        }
        stored.compressedSize = received
        return stored
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
