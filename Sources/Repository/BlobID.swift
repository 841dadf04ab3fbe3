import Foundation

/// A 256-bit identifier: of a blob (keyed hash of its plaintext) or of a file (SHA-256 of its bytes).
/// Stored as four words so hashing and comparison stay cheap in large indexes.
public struct BlobID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Builds an ID from exactly 32 bytes.
    public init<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        precondition(bytes.count == 32, "a BlobID is 32 bytes")
        var words: [UInt64] = [0, 0, 0, 0]
        for (i, b) in bytes.enumerated() {
            words[i / 8] = (words[i / 8] << 8) | UInt64(b)
        }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    /// Parses 64 lowercase or uppercase hex digits.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var words: [UInt64] = [0, 0, 0, 0]
        for (i, c) in utf8.enumerated() {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            words[i / 16] = (words[i / 16] << 4) | UInt64(v)
        }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    /// The 32 bytes, most significant first.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for w in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: w >> UInt64(shift))) }
        }
        return out
    }

    public var hex: String {
        String(unsafeUninitializedCapacity: 64) { out in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { digits in
                var i = 0
                for w in [w0, w1, w2, w3] {
                    for shift in stride(from: 60, through: 0, by: -4) {
                        out[i] = digits[Int((w >> UInt64(shift)) & 0xF)]
                        i += 1
                    }
                }
            }
            return 64
        }
    }

    /// One word is enough: IDs are keyed hashes or SHA-256 digests, uniformly distributed, and the
    /// hasher is seeded per process. Hashing a quarter of the bytes makes index lookups cheaper.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(w0)
    }

    public static func == (a: BlobID, b: BlobID) -> Bool {
        a.w0 == b.w0 && a.w1 == b.w1 && a.w2 == b.w2 && a.w3 == b.w3
    }

    /// The first 8 hex digits, as shown to people.
    public var short: String { String(hex.prefix(8)) }

    public var description: String { hex }

    public static func < (a: BlobID, b: BlobID) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = BlobID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a 64-digit hex ID"))
        }
        self = id
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

/// What a blob holds.
public enum BlobType: UInt8, Sendable, Codable, CustomStringConvertible {
    /// A piece of file content.
    case data = 0
    /// A directory listing (tree) of a snapshot.
    case tree = 1

    public var description: String { self == .data ? "data" : "tree" }
}
