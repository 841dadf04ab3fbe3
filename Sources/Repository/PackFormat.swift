import Crypto
import Foundation

/// One blob inside a pack, as listed in the pack's header and in index files.
public struct PackedBlob: Sendable, Hashable {
    public var type: BlobType
    public var id: BlobID
    /// Offset of the encrypted blob within the pack.
    public var offset: UInt32
    /// Length of the encrypted blob (what to read).
    public var length: UInt32
    /// Length of the plaintext content (after decompression).
    public var rawLength: UInt32
}

/// Byte-level encodings of packs, pack headers and encrypted blobs. See docs/repository-format.md.
///
/// A pack is `blob_1 ‖ … ‖ blob_n ‖ sealed header ‖ header length (UInt32 LE)`; its name is the
/// SHA-256 of all its bytes. An encrypted blob is `seal(encoding ‖ payload, aad: "cairn blob" ‖ type ‖ id)`
/// where encoding 0 means the payload is the plaintext and 1 means a zstd frame of it.
enum PackFormat {
    static let headerMagic = Data("CPK1".utf8)
    static let headerEntrySize = 1 + 32 + 4 + 4
    static let headerAAD = Data("cairn pack header".utf8)

    static func blobAAD(type: BlobType, id: BlobID) -> Data {
        var aad = Data("cairn blob".utf8)
        aad.append(type.rawValue)
        aad.append(contentsOf: id.bytes)
        return aad
    }

    /// Plaintext header: magic, count, then per blob type, id, encrypted length, raw length.
    static func encodeHeader(_ blobs: [PackedBlob]) -> Data {
        var out = headerMagic
        out.reserveCapacity(8 + blobs.count * headerEntrySize)
        out.appendLE(UInt32(blobs.count))
        for b in blobs {
            out.append(b.type.rawValue)
            out.append(contentsOf: b.id.bytes)
            out.appendLE(b.length)
            out.appendLE(b.rawLength)
        }
        return out
    }

    static func decodeHeader(_ data: Data, location: String) throws -> [PackedBlob] {
        try data.withUnsafeBytes { try decodeHeader(ByteReader($0), location: location) }
    }

    static func decodeHeader(_ reader: ByteReader, location: String) throws -> [PackedBlob] {
        var reader = reader
        guard reader.expect(headerMagic), let count = reader.u32(),
              reader.remaining == Int(count) * headerEntrySize else {
            throw RepositoryError.corrupt("pack header", location, "malformed")
        }
        var blobs: [PackedBlob] = []
        blobs.reserveCapacity(Int(count))
        var offset: UInt32 = 0
        for _ in 0..<count {
            guard let t = reader.u8(), let type = BlobType(rawValue: t), let id = reader.id(), let len = reader.u32(),
                  let raw = reader.u32() else {
                throw RepositoryError.corrupt("pack header", location, "malformed entry")
            }
            blobs.append(PackedBlob(type: type, id: id, offset: offset, length: len, rawLength: raw))
            offset &+= len
        }
        return blobs
    }

    /// Reads and decrypts the header at the end of a whole pack.
    static func readHeader(pack: Data, cipher: BlobCipher, location: String) throws -> [PackedBlob] {
        guard pack.count >= 4 else { throw RepositoryError.corrupt("pack", location, "shorter than its trailer") }
        let headerLength = pack.suffix(4).withUnsafeBytes { Int(ByteReader($0).peekU32()) }
        guard headerLength + 4 <= pack.count else {
            throw RepositoryError.corrupt("pack", location, "header length exceeds the pack")
        }
        let sealed = pack.subdata(in: (pack.endIndex - 4 - headerLength)..<(pack.endIndex - 4))
        guard let plain = try? cipher.open(sealed, aad: headerAAD) else {
            throw RepositoryError.corrupt("pack header", location, "authentication failed")
        }
        let blobs = try decodeHeader(plain, location: location)
        let dataEnd = pack.count - 4 - headerLength
        if let last = blobs.last, Int(last.offset) + Int(last.length) != dataEnd {
            throw RepositoryError.corrupt("pack", location, "blob lengths do not add up to the pack size")
        }
        return blobs
    }
}

extension Data {
    mutating func appendLE(_ v: UInt32) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendLE(_ v: UInt64) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

/// Bounds-checked little-endian reader over raw bytes; returns nil instead of trapping on short input.
/// Shared by every binary format of the repository (pack headers, index files, trees).
public struct ByteReader {
    let raw: UnsafeRawBufferPointer
    public private(set) var position = 0

    public init(_ raw: UnsafeRawBufferPointer) {
        self.raw = raw
    }

    public var remaining: Int { raw.count - position }

    public mutating func take(_ n: Int) -> UnsafeRawBufferPointer? {
        guard n >= 0, remaining >= n else { return nil }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: raw[position..<(position + n)])
    }

    public mutating func u8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { position += 1 }
        return raw[position]
    }

    public mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { position += 4 }
        return UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }

    public mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        defer { position += 8 }
        return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt64.self))
    }

    /// A 32-byte ID, most significant byte first.
    public mutating func id() -> BlobID? {
        guard remaining >= 32 else { return nil }
        func word(_ k: Int) -> UInt64 {
            UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: position + 8 * k, as: UInt64.self))
        }
        defer { position += 32 }
        return BlobID(w0: word(0), w1: word(1), w2: word(2), w3: word(3))
    }

    /// The next UInt32 without consuming it (0 if short).
    public func peekU32() -> UInt32 {
        remaining >= 4 ? UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)) : 0
    }

    /// Whether the next bytes are `expected` (consumed if so).
    public mutating func expect(_ expected: Data) -> Bool {
        guard let bytes = take(expected.count) else { return false }
        return expected.elementsEqual(bytes)
    }
}

extension BlobID {
    /// SHA-256 of `data`: the name of packs and files.
    static func sha256(_ data: Data) -> BlobID {
        BlobID(bytes: Array(SHA256.hash(data: data)))
    }
}
