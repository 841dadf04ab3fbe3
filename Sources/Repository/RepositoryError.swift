import Foundation
import Storage

/// The one error type of the `Repository` module. `code` is stable; `message` says what went wrong and
/// what to do; `location` names the object. Never carries a password or key.
public struct RepositoryError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notARepository = "not-a-repository"
        case newerFormat = "newer-format"
        case wrongPassword = "wrong-password"
        case corrupt = "corrupt"
        case missing = "missing"
        case locked = "locked"
        /// A held lock could not be renewed (or was removed): the operation it guarded was stopped.
        case lockLost = "lock-lost"
        case invalidArgument = "invalid-argument"
        case storage = "storage"
        case keyInUse = "key-in-use"
        /// A copy between repositories that do not share blob IDs (`Repository.initialize(pairedWith:)`).
        case notPaired = "not-paired"
        /// A receive token that is damaged or altered, expired, revoked, or for another cluster.
        case tokenRejected = "token-rejected"
        case revoked = "revoked"
    }

    public var code: Code
    public var message: String
    public var location: String?
    public var underlying: String?
    /// The storage error behind a `.storage` error, kept whole: its code says whether the disk is full, access
    /// was denied or the server was unreachable.
    public var storage: StorageError?

    public init(_ code: Code, _ message: String, location: String? = nil, underlying: String? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.underlying = underlying
    }

    /// The one mapping of a storage failure into this module's error: the code becomes `.storage`, the
    /// storage error's own code, message and transience are kept.
    public init(_ storage: StorageError) {
        self.init(.storage, storage.message, location: storage.location, underlying: storage.underlying)
        self.storage = storage
    }

    /// Whether the same operation may succeed later without anyone changing anything: the storage was
    /// unreachable, or another process holds the lock.
    public var isTransient: Bool {
        switch code {
        case .locked, .lockLost: return true
        case .storage: return storage?.isTransient ?? false
        default: return false
        }
    }

    public var description: String {
        var text = message
        if let location { text += " (\(location))" }
        if let underlying { text += ": \(underlying)" }
        return text
    }

    public static func corrupt(_ what: String, _ location: String, _ detail: String? = nil) -> RepositoryError {
        RepositoryError(.corrupt,
                        "\(what) is damaged; a check of the repository that reads its data shows what it affects",
                        location: location, underlying: detail)
    }
}
