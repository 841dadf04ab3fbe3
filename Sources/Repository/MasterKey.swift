import Crypto
import Foundation

/// The repository's secrets. Created once at `repo init`, never changed; wrapped by each password.
public struct MasterKey: Sendable, Codable {
    /// AES-256-GCM master key (HKDF input for per-message subkeys).
    public var encryption: Data
    /// HMAC-SHA256 key for blob IDs, so IDs reveal nothing about content without the key.
    public var id: Data

    public static func generate() -> MasterKey {
        MasterKey(encryption: randomBytes(32), id: randomBytes(32))
    }

    var cipher: BlobCipher { BlobCipher(key: SymmetricKey(data: encryption)) }
}

func randomBytes(_ count: Int) -> Data {
    var rng = SystemRandomNumberGenerator()
    return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
}
