import Crypto
import Foundation
import Storage

/// What an administrator of another cluster pastes to read a repository's restore points (imports, DR).
///
/// Issuing one adds a key file to the repository, with a random password and terms (`KeyFile.Grant`:
/// `receive`, issued, expires, the receiving cluster) sealed together with it; the token carries where the
/// repository is, which key, that password and a copy of the terms. Removing the key file revokes it.
///
/// Text form: `cairn-receive-v1.` ‖ base64url(JSON) ‖ `.` ‖ base64url(HMAC-SHA256(SHA-256("cairn receive
/// token" ‖ password), JSON)). The checksum catches a damaged or edited token before anything is tried;
/// the decisions (expired, for which cluster) are taken on the terms in the repository's key file, which
/// no one can change without the password *and* write access to the storage.
public struct ReceiveToken: Codable, Sendable, CustomStringConvertible {
    public static let prefix = "cairn-receive-v1."

    /// Where the repository is, in the shape of a Profile's `spec.location`.
    public struct Location: Codable, Sendable, Equatable {
        public struct S3: Codable, Sendable, Equatable {
            public var bucket: String
            public var prefix: String?
            public var endpoint: String?
            public var region: String?
            public var pathStyle: Bool?
            public var insecure: Bool?

            public init(bucket: String, prefix: String?, endpoint: String?, region: String?, pathStyle: Bool?, insecure: Bool?) {
                self.bucket = bucket
                self.prefix = prefix
                self.endpoint = endpoint
                self.region = region
                self.pathStyle = pathStyle
                self.insecure = insecure
            }
        }
        public struct Filesystem: Codable, Sendable, Equatable {
            public var path: String
        }
        public var s3: S3?
        public var filesystem: Filesystem?

        public init(s3: S3) { self.s3 = s3 }
        public init(path: String) { self.filesystem = Filesystem(path: path) }
    }

    /// The repository's ID (`config.id`).
    public var repository: String
    public var location: Location
    /// The key file this token opens.
    public var key: String
    public var password: String
    /// The terms, as issued (informative; the key file's are the ones that count).
    public var grant: KeyFile.Grant
    /// The cluster that issued it, for people.
    public var issuer: String?

    public var description: String {
        "receive token for repository \(repository.prefix(8)), key \(key.prefix(8))"
            + (grant.expires.map { ", expires \(Self.format($0))" } ?? "")
    }

    static func format(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }

    /// Adds a key for the token to `repository` and returns the token.
    public static func issue(for repository: Repository, location: Location, expires: Date?, audience: String?,
                             label: String?, issuer: String?, now: Date = Date()) async throws -> ReceiveToken {
        let password = randomBytes(32).base64EncodedString()
        let grant = KeyFile.Grant(purpose: "receive", issued: now, expires: expires, audience: audience, label: label)
        let key = try await repository.addKey(password: password, grant: grant)
        return ReceiveToken(repository: repository.config.id, location: location, key: key, password: password,
                            grant: grant, issuer: issuer)
    }

    static func macKey(_ password: String) -> SymmetricKey {
        SymmetricKey(data: SHA256.hash(data: Data("cairn receive token".utf8) + Data(password.utf8)))
    }

    /// The text to hand over.
    public func encoded() throws -> String {
        let json = try JSONEncoder.sorted.encode(self)
        let mac = HMAC<SHA256>.authenticationCode(for: json, using: Self.macKey(password))
        return Self.prefix + Self.base64url(json) + "." + Self.base64url(Data(mac))
    }

    static func rejected(_ message: String) -> RepositoryError {
        RepositoryError(.tokenRejected, message)
    }

    /// Reads a token's text; refuses one that is not a token, or was damaged or altered.
    public static func decode(_ text: String) throws -> ReceiveToken {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix(prefix) else {
            throw rejected("this is not a Cairn receive token (it should start with \(prefix)); copy the token Secret's `token` value from the source cluster")
        }
        let parts = trimmed.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let json = unbase64url(String(parts[0])), let mac = unbase64url(String(parts[1])),
              let token = try? JSONDecoder.iso.decode(ReceiveToken.self, from: json) else {
            throw rejected("the receive token is damaged (it does not decode): copy it again, whole, from the source cluster")
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: json, using: macKey(token.password)) else {
            throw rejected("the receive token was altered or damaged (its checksum does not match): copy it again from the source cluster")
        }
        return token
    }

    /// Opens the repository the token is for, in `store` (its location), as the cluster `clusterID`: fails
    /// with why when the key was revoked, has expired, is for another cluster, or the store holds another
    /// repository.
    public func open(store: any BlobStore, clusterID: String?, now: Date = Date()) async throws -> Repository {
        let repository: Repository
        do {
            repository = try await Repository.open(store: store, password: password, keyName: key)
        } catch let error as RepositoryError where error.code == .revoked {
            throw RepositoryError(.tokenRejected, "the receive token was revoked: its key \(key.prefix(8)) is no longer in the repository at \(store.location). Ask the source cluster's administrator for a new token",
                                  location: store.location)
        } catch let error as RepositoryError where error.code == .wrongPassword {
            throw RepositoryError(.tokenRejected, "the receive token does not open its key \(key.prefix(8)) at \(store.location): the token was altered, or the key was replaced",
                                  location: store.location)
        }
        guard repository.config.id == self.repository else {
            throw RepositoryError(.tokenRejected, "the location \(store.location) holds repository \(repository.config.id.prefix(8)), not \(self.repository.prefix(8)) the token is for",
                                  location: store.location)
        }
        guard let terms = repository.keyGrant, terms.purpose == "receive" else {
            throw RepositoryError(.tokenRejected, "the key \(key.prefix(8)) is not a receive token's key", location: store.location)
        }
        if terms.isExpired(at: now), let expires = terms.expires {
            throw RepositoryError(.tokenRejected, "the receive token expired at \(Self.format(expires)); ask the source cluster's administrator for a new one",
                                  location: store.location)
        }
        if let audience = terms.audience, audience != clusterID {
            throw RepositoryError(.tokenRejected, "the receive token was issued for another cluster (kube-system UID \(audience)); this cluster is \(clusterID ?? "unknown"). Ask for a token issued to this cluster",
                                  location: store.location)
        }
        return repository
    }

    /// Removes keys of receive tokens that expired before `now`; returns how many.
    public static func removeExpired(from repository: Repository, now: Date = Date()) async throws -> Int {
        var removed = 0
        for key in try await repository.listKeys() where key.grant?.purpose == "receive" && key.grant?.isExpired(at: now) == true
            && key.name != repository.keyName {
            try await repository.removeKey(name: key.name)
            removed += 1
        }
        return removed
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func unbase64url(_ text: String) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }
}
