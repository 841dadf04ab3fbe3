import Crypto
import Foundation

/// Sizes and the secret gear table of the content-defined chunker.
///
/// Defaults: minimum 256 KiB, average 1 MiB, maximum 8 MiB (see docs/repository-format.md for why).
/// The gear table is derived from a per-repository secret seed, so chunk boundaries — and therefore
/// chunk sizes — cannot be predicted by someone without the repository key (a known fingerprinting
/// attack on content-defined chunking with a public table).
public struct ChunkerParameters: Sendable, Codable, Equatable {
    public var minSize: Int
    public var averageBits: Int
    public var maxSize: Int
    /// 32 secret bytes from which the gear table is derived.
    public var seed: Data

    public var averageSize: Int { 1 << averageBits }

    public init(minSize: Int = 256 << 10, averageBits: Int = 20, maxSize: Int = 8 << 20, seed: Data) {
        self.minSize = minSize
        self.averageBits = averageBits
        self.maxSize = maxSize
        self.seed = seed
    }

    /// Checks the sizes make sense (a corrupt or hand-edited config must not wedge the chunker).
    public func validate() throws {
        guard minSize >= 64, averageBits >= 8, averageBits <= 28, minSize < averageSize, averageSize < maxSize,
              maxSize <= 64 << 20, seed.count == 32 else {
            throw RepositoryError(.corrupt, "chunker parameters in the repository config are out of range")
        }
    }

    /// The 256-entry gear table: entry i is the first 8 bytes of HMAC-SHA256(seed, "gear" ‖ i).
    public func gearTable() -> [UInt64] {
        let key = SymmetricKey(data: seed)
        return (0..<256).map { i -> UInt64 in
            var message = Data("gear".utf8)
            message.append(UInt8(i))
            let mac = Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
            return mac.prefix(8).reduce(0) { ($0 << 8) | UInt64($1) }
        }
    }
}
