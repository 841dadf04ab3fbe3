import Foundation

/// The one error type of the `Snapshot` module: problems with files as a user sees them (sources that
/// cannot be read, targets that cannot be written), with snapshot references and with volume streams.
/// Repository failures pass through as `RepositoryError`.
///
/// `code` is stable (the CLI maps it to an exit code, the controller to a condition reason), `message` says
/// what went wrong and what to do, `path` names the file or snapshot, `cause` keeps what the system said.
public struct SnapshotError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The request cannot be carried out as given (no paths, a path that is not a directory…).
        case invalidArgument = "invalid-argument"
        /// No snapshot matches the reference.
        case notFound = "not-found"
        /// The reference matches several snapshots.
        case ambiguous = "ambiguous"
        /// The restore target already holds entries the snapshot would write.
        case conflict = "conflict"
        /// A file to back up cannot be read (the backup goes on without it and ends partial).
        case unreadable = "unreadable"
        /// The disk being written is full.
        case noSpace = "no-space"
        /// The file system refused the write (mode, owner, read-only mount).
        case permissionDenied = "permission-denied"
        /// Another failure of the local file system.
        case io = "io"
        /// A volume stream is malformed or ended early: the mover stopped or sent something else.
        case malformedStream = "malformed-stream"
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, path: String? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.cause = cause
    }

    /// Whether the same operation may succeed when run again unchanged: only an interrupted system call.
    public var isTransient: Bool {
        guard let posix = cause as? POSIXError else { return false }
        return posix.code == .EINTR || posix.code == .EAGAIN
    }

    public var description: String {
        var text = message
        if let path, !message.contains(path) { text += " (\(path))" }
        if let posix = cause as? POSIXError {
            text += ": " + String(cString: strerror(posix.code.rawValue))
        } else if let cause {
            text += ": \(cause)"
        }
        return text
    }

    /// A failed system call on a file being written (a restore target): classified so a full disk reads
    /// as a full disk, not as a bad request.
    static func writing(_ errnoValue: Int32, _ what: String, path: String) -> SnapshotError {
        let cause = POSIXError(POSIXErrorCode(rawValue: errnoValue) ?? .EIO)
        switch errnoValue {
        case ENOSPC, EDQUOT:
            return SnapshotError(.noSpace, "cannot \(what) \(path): no space left on the target; free space and restore again",
                                 path: path, cause: cause)
        case EACCES, EPERM, EROFS:
            return SnapshotError(.permissionDenied, "cannot \(what) \(path): the file system refused; check the owner, "
                                 + "mode and mount of the target", path: path, cause: cause)
        default:
            return SnapshotError(.io, "cannot \(what) \(path)", path: path, cause: cause)
        }
    }

    /// A file to back up that cannot be read; becomes a warning of a partial backup.
    static func unreadable(_ path: String, errno errnoValue: Int32, operation: String) -> SnapshotError {
        SnapshotError(.unreadable, "\(path): \(operation)", path: path,
                      cause: POSIXError(POSIXErrorCode(rawValue: errnoValue) ?? .EIO))
    }

    /// A malformed volume stream.
    static func stream(_ message: String) -> SnapshotError {
        SnapshotError(.malformedStream, "volume stream: \(message)")
    }
}
