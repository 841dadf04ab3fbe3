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

    public static func new() -> RepositoryConfig {
        RepositoryConfig(version: formatVersion, id: randomBytes(16).map { String(format: "%02x", $0) }.joined(),
                         created: Date(), chunker: ChunkerParameters(seed: randomBytes(32)), compressionLevel: 3,
                         packSize: 16 << 20)
    }

    func validate() throws {
        try chunker.validate()
        guard (0...19).contains(compressionLevel), packSize >= 1 << 20, packSize <= 512 << 20 else {
            throw RepositoryError(.corrupt, "repository config values are out of range")
        }
    }
}
