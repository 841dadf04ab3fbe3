import Foundation

/// The one error type of the `Storage` module.
///
/// `code` is stable (scripts and the controller match on it), `message` tells a person what went wrong
/// and what to do, `location` names the object or path (never a credential).
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notFound = "not-found"
        case alreadyExists = "already-exists"
        case permissionDenied = "permission-denied"
        case rangeNotSatisfiable = "range-not-satisfiable"
        case noSpace = "no-space"
        case unavailable = "unavailable"
        case io = "io"
        case invalidArgument = "invalid-argument"
    }

    public var code: Code
    public var message: String
    public var location: String
    public var underlying: String?

    public init(_ code: Code, _ message: String, location: String, underlying: String? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.underlying = underlying
    }

    /// Whether retrying the same request may succeed.
    public var isTransient: Bool {
        code == .unavailable
    }

    public var description: String {
        var text = "\(message) (\(location))"
        if let underlying { text += ": \(underlying)" }
        return text
    }

    /// Maps an `errno` value from a filesystem call to a storage error.
    public static func posix(_ errnoValue: Int32, operation: String, path: String) -> StorageError {
        let reason = String(cString: strerror(errnoValue))
        switch errnoValue {
        case ENOENT:
            return StorageError(.notFound, "\(operation): no such object", location: path, underlying: reason)
        case EEXIST:
            return StorageError(.alreadyExists, "\(operation): object already exists", location: path,
                                underlying: reason)
        case EACCES, EPERM, EROFS:
            return StorageError(.permissionDenied,
                                "\(operation): permission denied; check the owner and mode of the repository",
                                location: path, underlying: reason)
        case ENOSPC, EDQUOT:
            return StorageError(.noSpace, "\(operation): no space left; free space and run the command again",
                                location: path, underlying: reason)
        case EINTR, EAGAIN:
            return StorageError(.unavailable, "\(operation): interrupted", location: path, underlying: reason)
        default:
            return StorageError(.io, "\(operation) failed", location: path, underlying: reason)
        }
    }
}
