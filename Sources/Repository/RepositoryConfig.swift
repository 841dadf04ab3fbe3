import Foundation

/// The plaintext marker `format`: tells any tool what this directory is and which format it uses,
/// before a password is known. Its content is repeated inside the encrypted config and compared on open,
/// so tampering with it is detected.
public struct FormatMarker: Codable, Sendable, Equatable {
    public var cairn: String
    public var version: Int

    public static let current = FormatMarker(cairn: "repository", version: RepositoryConfig.formatVersion)
}

/// The encrypted repository configuration (`config`).
public struct RepositoryConfig: Codable, Sendable {
    public static let formatVersion = 1

    public var version: Int
    /// Random repository ID (hex), shown to people and stored in snapshots' origin.
    public var id: String
    public var created: Date
    public var chunker: ChunkerParameters
    /// zstd level for blobs; 0 turns compression off.
    public var compressionLevel: Int
    /// Target pack size in bytes.
    public var packSize: Int

    /// zstd level 1 by default: on source trees and database pages it is about a quarter faster than
    /// level 3 for 1–3% larger output. `cairn repo init --compression-level` chooses another trade-off.
    public static let defaultCompressionLevel = 1

    public static func new(compressionLevel: Int = defaultCompressionLevel) -> RepositoryConfig {
        RepositoryConfig(version: formatVersion, id: randomBytes(16).map { String(format: "%02x", $0) }.joined(),
                         created: Date(), chunker: ChunkerParameters(seed: randomBytes(32)),
                         compressionLevel: compressionLevel, packSize: 16 << 20)
    }

    func validate() throws {
        try chunker.validate()
        guard (0...19).contains(compressionLevel), packSize >= 1 << 20, packSize <= 512 << 20 else {
            throw RepositoryError(.corrupt, "repository config values are out of range")
        }
    }
}
