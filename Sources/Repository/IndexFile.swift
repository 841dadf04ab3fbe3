import Foundation

/// The content of one index file: which blobs live in which packs, and which older index files it
/// replaces (written by prune; readers ignore superseded files).
///
/// Plaintext layout (before the generic file encoding): `"CIX1"`, UInt32 count of superseded index IDs,
/// those IDs (32 bytes each), UInt32 pack count, then per pack: pack ID (32), UInt32 blob count, and per
/// blob: type (1), ID (32), offset, length, raw length (UInt32 LE each). Fixed-width binary so that a
/// repository check reads millions of entries per second.
public struct IndexFile: Sendable {
    public struct Pack: Sendable {
        public var id: BlobID
        public var blobs: [PackedBlob]
    }

    public var supersedes: [BlobID] = []
    public var packs: [Pack] = []

    static let magic = Data("CIX1".utf8)
    static let entrySize = 1 + 32 + 12

    public var blobCount: Int { packs.reduce(0) { $0 + $1.blobs.count } }

    func encode() -> Data {
        var out = Self.magic
        out.reserveCapacity(12 + supersedes.count * 32 + packs.count * 36 + blobCount * Self.entrySize)
        out.appendLE(UInt32(supersedes.count))
        for id in supersedes { out.append(contentsOf: id.bytes) }
        out.appendLE(UInt32(packs.count))
        for pack in packs {
            out.append(contentsOf: pack.id.bytes)
            out.appendLE(UInt32(pack.blobs.count))
            for b in pack.blobs {
                out.append(b.type.rawValue)
                out.append(contentsOf: b.id.bytes)
                out.appendLE(b.offset)
                out.appendLE(b.length)
                out.appendLE(b.rawLength)
            }
        }
        return out
    }

    static func decode(_ data: Data, location: String) throws -> IndexFile {
        try data.withUnsafeBytes { try decode(ByteReader($0), location: location) }
    }

    static func decode(_ reader: ByteReader, location: String) throws -> IndexFile {
        var r = reader
        func bad(_ detail: String) -> RepositoryError { .corrupt("index file", location, detail) }
        guard r.expect(magic), let sc = r.u32(), Int(sc) * 32 <= r.remaining else { throw bad("malformed") }
        var file = IndexFile()
        for _ in 0..<sc { file.supersedes.append(r.id()!) }
        guard let pc = r.u32() else { throw bad("malformed") }
        file.packs.reserveCapacity(Int(min(pc, 1 << 20)))
        for _ in 0..<pc {
            guard let packID = r.id(), let bc = r.u32(), Int(bc) * entrySize <= r.remaining else {
                throw bad("truncated pack entry")
            }
            var blobs: [PackedBlob] = []
            blobs.reserveCapacity(Int(bc))
            for _ in 0..<bc {
                guard let t = r.u8(), let type = BlobType(rawValue: t), let id = r.id(), let off = r.u32(),
                      let len = r.u32(), let raw = r.u32() else { throw bad("truncated blob entry") }
                blobs.append(PackedBlob(type: type, id: id, offset: off, length: len, rawLength: raw))
            }
            file.packs.append(Pack(id: packID, blobs: blobs))
        }
        guard r.remaining == 0 else { throw bad("trailing bytes") }
        return file
    }
}

/// Where a blob is: which pack (by position in `MasterIndex.packs`) and which bytes.
public struct BlobLocation: Sendable, Hashable {
    public var pack: UInt32
    public var offset: UInt32
    public var length: UInt32
    public var rawLength: UInt32
    public var type: BlobType
}

/// The in-memory union of all index files: blob ID → location. Not thread-safe by itself; the
/// `Repository` guards it.
public struct MasterIndex: Sendable {
    public private(set) var packs: [BlobID] = []
    private var packNumbers: [BlobID: UInt32] = [:]
    private var blobs = BlobTable()
    /// Blobs present in more than one pack (harmless; counted for `check` and removed by prune).
    public private(set) var duplicateCount = 0

    public init() {}

    public var count: Int { blobs.count }

    public mutating func reserve(_ n: Int) {
        blobs.reserve(n)
    }

    public func lookup(_ id: BlobID) -> BlobLocation? { blobs[id] }

    public func contains(_ id: BlobID) -> Bool { blobs[id] != nil }

    /// Whether every one of `ids` is in the index: one tight loop, so the memory reads of several lookups
    /// are in flight at once (a check's walk looks up a tree's files together).
    public func containsAll(_ ids: [BlobID]) -> Bool { blobs.containsAll(ids) }

    public func packID(of location: BlobLocation) -> BlobID { packs[Int(location.pack)] }

    public func containsPack(_ id: BlobID) -> Bool { packNumbers[id] != nil }

    /// Adds a pack's blobs. A blob already known keeps its first location.
    public mutating func add(pack: BlobID, blobs entries: [PackedBlob]) {
        let number: UInt32
        if let known = packNumbers[pack] {
            number = known
        } else {
            number = UInt32(packs.count)
            packs.append(pack)
            packNumbers[pack] = number
        }
        for b in entries {
            let location = BlobLocation(pack: number, offset: b.offset, length: b.length, rawLength: b.rawLength,
                                        type: b.type)
            // A blob already known keeps its first location.
            if let existing = blobs.insert(b.id, location), existing.pack != number { duplicateCount += 1 }
        }
    }

    /// Calls `body` for every blob.
    public func forEach(_ body: (BlobID, BlobLocation) throws -> Void) rethrows {
        for (id, location) in zip(blobs.ids, blobs.locations) { try body(id, location) }
    }
}
