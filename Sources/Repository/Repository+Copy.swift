import Crypto
import Foundation
import Storage

/// Copying blobs between two paired repositories (`initialize(pairedWith:)`): the same chunker and blob-ID
/// key, each its own encryption key. A blob keeps its ID, so the destination's index says what it already
/// has and only the rest is read; each blob is opened with the source's key (authenticated, bound to its
/// type and ID) and sealed again with the destination's, without decompressing or compressing it again.
extension Repository {
    /// Whether blobs have the same IDs here and in `other` (same ID key and chunker), without revealing
    /// either key.
    public func isPaired(with other: Repository) -> Bool {
        let probe = Data("cairn pairing probe".utf8)
        return blobID(for: probe) == other.blobID(for: probe) && config.chunker == other.config.chunker
    }

    /// Fails with `.notPaired` and what to do unless `source` is paired with this repository.
    public func requirePaired(with source: Repository) throws {
        guard isPaired(with: source) else {
            throw RepositoryError(.notPaired,
                                  "the destination repository \(config.id.prefix(8)) was not created for copies of \(source.config.id.prefix(8)): blob IDs differ, so nothing could be deduplicated. Copy into an empty location instead: the first copy creates the repository there, paired (a Profile meant for exports must not have spec.init)",
                                  location: store.location)
        }
    }

    /// What `copyBlobs` did.
    public struct CopyCounts: Sendable, Equatable {
        /// Blobs and sealed bytes read from the source.
        public var blobsRead = 0
        public var bytesRead = 0
        /// Sealed bytes added to this repository.
        public var bytesWritten = 0
        /// Uncompressed bytes of the blobs copied.
        public var rawBytes = 0

        public init() {}

        public static func += (a: inout CopyCounts, b: CopyCounts) {
            a.blobsRead += b.blobsRead
            a.bytesRead += b.bytesRead
            a.bytesWritten += b.bytesWritten
            a.rawBytes += b.rawBytes
        }
    }

    /// Copies the blobs of `ids` this repository lacks from a paired `source`, reading runs stored back to
    /// back with one request each. Durable and indexed only after `flush`.
    public func copyBlobs(_ ids: [BlobID], from source: Repository, maxRun: Int = 4 << 20) async throws -> CopyCounts {
        var counts = CopyCounts()
        let wanted = ids.filter { id in
            state.withLock { s in
                if s.index.contains(id) || s.pending.contains(id) { return false }
                s.pending.insert(id)
                return true
            }
        }
        guard !wanted.isEmpty else { return counts }
        var placed = Set<BlobID>()
        defer {
            // Blobs not placed (an error stopped the copy) are no longer "being stored".
            state.withLock { s in for id in wanted where !placed.contains(id) { s.pending.remove(id) } }
        }
        for run in source.contiguousRuns(wanted, maxBytes: maxRun) {
            let slice = wanted[run]
            for blob in try await source.loadSealedRun(slice) {
                let resealed = try cipher.seal(blob.encoded, aad: PackFormat.blobAAD(type: blob.type, id: blob.id))
                placed.insert(blob.id)
                try await place(type: blob.type, id: blob.id, sealed: resealed, rawLength: blob.rawLength)
                counts.blobsRead += 1
                counts.bytesRead += blob.sealedLength
                counts.bytesWritten += resealed.count
                counts.rawBytes += blob.rawLength
            }
        }
        return counts
    }

    /// A blob opened for copying: authenticated, still encoded (compressed as stored).
    struct OpenedBlob {
        var id: BlobID
        var type: BlobType
        var encoded: Data
        var rawLength: Int
        var sealedLength: Int
    }

    /// Reads blobs stored back to back in one pack with one request (`streamSealedRun`), and opens each
    /// (authenticating it against its type and ID) without decoding it.
    func loadSealedRun(_ ids: ArraySlice<BlobID>) async throws -> [OpenedBlob] {
        var result: [OpenedBlob] = []
        result.reserveCapacity(ids.count)
        try await streamSealedRun(ids) { blob in
            let encoded = try openBlob(blob.sealed, id: blob.id, location: blob.location, pack: blob.pack)
            result.append(OpenedBlob(id: blob.id, type: blob.location.type, encoded: encoded,
                                     rawLength: Int(blob.location.rawLength), sealedLength: Int(blob.location.length)))
        }
        return result
    }
}
