import Crypto
import _CryptoExtras
import Foundation

/// One password's wrapping of the master key: `keys/<id>` (plain JSON with an encrypted payload).
public struct KeyFile: Codable, Sendable {
    public struct KDF: Codable, Sendable {
        public var name: String
        /// scrypt cost parameter N (a power of two), block size r and parallelism p.
        public var n: Int
        public var r: Int
        public var p: Int
        public var salt: Data
    }

    public var version: Int
    public var created: Date
    public var hostname: String
    public var username: String
    public var kdf: KDF
    /// `BlobCipher.seal(MasterKey JSON, aad: "cairn key" [‖ "\n" ‖ grant JSON])` under the scrypt-derived key.
    public var data: Data
    /// What a key made for someone else allows (a receive token's key): bound to the sealed data, so it
    /// cannot be changed without the password.
    public var grant: Grant?

    /// The terms of a key made to be handed out (`ReceiveToken`).
    public struct Grant: Codable, Sendable, Equatable {
        /// `receive`: read the repository's restore points from another cluster.
        public var purpose: String
        public var issued: Date
        /// After this the key is refused (and removed by the next export).
        public var expires: Date?
        /// The cluster (its kube-system namespace UID) the key is for, if bound to one.
        public var audience: String?
        /// Who the key was made for, for people listing keys.
        public var label: String?

        public init(purpose: String, issued: Date, expires: Date?, audience: String?, label: String?) {
            // Whole seconds: the grant is bound to the key by its JSON, which must read back identically.
            self.purpose = purpose
            self.issued = Date(timeIntervalSince1970: issued.timeIntervalSince1970.rounded(.down))
            self.expires = expires.map { Date(timeIntervalSince1970: $0.timeIntervalSince1970.rounded(.down)) }
            self.audience = audience
            self.label = label
        }

        public func isExpired(at now: Date = Date()) -> Bool { expires.map { $0 <= now } ?? false }
    }

    static let baseAAD = Data("cairn key".utf8)

    static func aad(_ grant: Grant?) throws -> Data {
        guard let grant else { return baseAAD }
        return baseAAD + Data("\n".utf8) + (try JSONEncoder.sorted.encode(grant))
    }

    /// scrypt work factor. N = 2^15, r = 8, p = 1: 32 MiB and about a tenth of a second per attempt.
    /// `CAIRN_KDF_N` lowers it for tests only (recorded per key, so such keys still open later).
    public static var defaultN: Int {
        if let text = ProcessInfo.processInfo.environment["CAIRN_KDF_N"], let n = Int(text), n >= 1024,
           n & (n - 1) == 0 { return n }
        return 1 << 15
    }

    static func wrappingKey(password: String, kdf: KDF) throws -> SymmetricKey {
        // Bounded before any work: a key file is input, and scrypt takes 128·N·r bytes of memory and time in
        // N·r·p. At most 256 MiB (N·r ≤ 2^21) and sixteen such passes.
        guard kdf.name == "scrypt", kdf.n >= 2, kdf.n & (kdf.n - 1) == 0, kdf.r >= 1, kdf.p >= 1, kdf.r <= 32,
              kdf.p <= 16, kdf.n <= (1 << 21) / kdf.r, kdf.salt.count >= 16 else {
            throw RepositoryError(.corrupt, "key file asks for key-derivation parameters Cairn does not accept (scrypt with at most 256 MiB of memory): it was not written by Cairn")
        }
        return try KDF_Scrypt.derive(password: Data(password.utf8), salt: kdf.salt, n: kdf.n, r: kdf.r, p: kdf.p)
    }

    /// Wraps `master` with `password`.
    public static func create(master: MasterKey, password: String, grant: Grant? = nil) throws -> KeyFile {
        let kdf = KDF(name: "scrypt", n: defaultN, r: 8, p: 1, salt: randomBytes(32))
        let key = try wrappingKey(password: password, kdf: kdf)
        let payload = try JSONEncoder().encode(master)
        let sealed = try BlobCipher(key: key).seal(payload, aad: aad(grant))
        return KeyFile(version: 1, created: Date(), hostname: ProcessInfo.processInfo.hostName,
                       username: ProcessInfo.processInfo.environment["USER"] ?? "", kdf: kdf, data: sealed, grant: grant)
    }

    /// Unwraps the master key; nil if the password does not open this key.
    public func open(password: String) throws -> MasterKey? {
        let key = try Self.wrappingKey(password: password, kdf: kdf)
        guard let payload = try? BlobCipher(key: key).open(data, aad: try Self.aad(grant)) else { return nil }
        guard let master = try? JSONDecoder().decode(MasterKey.self, from: payload), master.encryption.count == 32,
              master.id.count == 32 else {
            throw RepositoryError(.corrupt, "a key file opened but its content is malformed")
        }
        return master
    }
}

enum KDF_Scrypt {
    static func derive(password: Data, salt: Data, n: Int, r: Int, p: Int) throws -> SymmetricKey {
        try KDF.Scrypt.deriveKey(from: password, salt: salt, outputByteCount: 32, rounds: n, blockSize: r,
                                 parallelism: p)
    }
}
