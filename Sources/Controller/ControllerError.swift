import Foundation
import Kube
import Protection
import Repository
import Snapshot
import Storage

/// The one error type of the `Controller` module. `reason` is stable and CamelCase: it becomes the reason
/// of a status condition and of an event; `message` says what is wrong and what to do (never a secret);
/// `cause` keeps the error of a lower module it came from; `isTransient` says whether the same work may
/// succeed later unchanged (the action is tried again instead of failing for good).
public struct ControllerError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var message: String
    public var isTransient: Bool
    public var cause: (any Error & Sendable)?

    public init(_ reason: String, _ message: String, transient: Bool = false, cause: (any Error & Sendable)? = nil) {
        self.reason = reason
        self.message = message
        self.isTransient = transient
        self.cause = cause
    }

    public var description: String { message }

    /// The leader Lease could not be renewed: the process stops so that no two controllers act at once.
    static let leadershipLost = ControllerError(
        "LeadershipLost", "lost the leader Lease: stopping so that no two controllers act at once")

    /// The one classification of any error met while running an action: its condition reason, and whether
    /// it is worth trying again. `fallback` is the reason of errors nothing more is known of.
    public static func classify(_ error: any Error, fallback: String) -> ControllerError {
        switch error {
        case let error as ControllerError:
            return error
        case let error as RepositoryError:
            let reason: String
            switch error.code {
            case .locked: reason = "RepositoryLocked"
            case .lockLost: reason = "RepositoryLockLost"
            case .corrupt, .missing: reason = "RepositoryDamaged"
            case .wrongPassword: reason = "WrongPassword"
            case .notARepository, .newerFormat: reason = "RepositoryNotFound"
            case .notPaired: reason = "DestinationNotPaired"
            case .tokenRejected, .revoked: reason = "TokenRejected"
            case .storage:
                switch error.storage?.code {
                case .noSpace?: reason = "RepositoryFull"
                case .permissionDenied?: reason = "RepositoryAccessDenied"
                default: reason = "RepositoryUnavailable"
                }
            default: reason = fallback
            }
            return ControllerError(reason, error.description, transient: error.isTransient, cause: error)
        case let error as SnapshotError:
            let reason: String
            switch error.code {
            case .noSpace: reason = "NoSpace"
            case .permissionDenied: reason = "PermissionDenied"
            case .malformedStream: reason = "MoverFailed"
            case .notFound: reason = "DataMissing"
            default: reason = fallback
            }
            return ControllerError(reason, error.description, transient: error.isTransient, cause: error)
        case let error as ProtectionError:
            return ControllerError(error.code.reason, error.description, transient: error.isTransient, cause: error)
        case let error as KubeError:
            let reason: String
            switch error.code {
            case .forbidden, .unauthorized: reason = "Forbidden"
            default: reason = error.isTransient ? "APIUnavailable" : fallback
            }
            return ControllerError(reason, error.description, transient: error.isTransient, cause: error)
        case let error as StorageError:
            return classify(RepositoryError(error), fallback: fallback)
        default:
            return ControllerError(fallback, "\(error)")
        }
    }
}
