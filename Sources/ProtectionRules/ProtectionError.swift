import Foundation

/// The one error type of the `Protection` module: what stops an application's backup or restore that is
/// not a failure of the repository (`RepositoryError`), of files (`SnapshotError`) or of the API server
/// (`KubeError`) — those pass through as they are.
///
/// `code` is stable (the controller's condition reason is `code.reason`), `message` says what went wrong
/// and what to do, naming settings rather than command-line flags (it reaches RestoreAction statuses),
/// `cause` keeps the lower error it came from.
public struct ProtectionError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A volume's directory cannot be reached from where Cairn runs (host access).
        case volumeUnreachable = "volume-unreachable"
        /// The mover pod did not start, could not use its image, or stopped while moving data.
        case moverFailed = "mover-failed"
        /// The mover image cannot be pulled or run on the node: someone must import or choose an image.
        case moverImageUnusable = "mover-image-unusable"
        /// A CSI volume snapshot could not be made, was not ready in time, or could not be read.
        case snapshotFailed = "snapshot-failed"
        /// A restored claim was not bound in time.
        case claimNotBound = "claim-not-bound"
        /// Workloads could not be quiesced, or not scaled back afterwards.
        case quiesceFailed = "quiesce-failed"
        /// A transform set is malformed or cannot be applied.
        case invalidTransform = "invalid-transform"
        /// A confined restore would write what its requester may not (`RestoreConfinement`).
        case forbidden = "forbidden"
        /// A snapshot is not a restore point, or lacks the data asked for.
        case notARestorePoint = "not-a-restore-point"
        case dataMissing = "data-missing"
        /// A blueprint or hook is malformed (`field` says where), or names what does not exist.
        case invalidBlueprint = "invalid-blueprint"
        /// A blueprint or hook phase failed: its command exited non-zero, timed out, or could not run.
        case phaseFailed = "phase-failed"

        /// The condition reason (CamelCase) the controller reports.
        public var reason: String {
            rawValue.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        }
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?
    /// Where in a document the mistake is (`spec.actions.backup.phases[1].exec.command`), for input that
    /// is checked field by field.
    public var field: String?
    /// The blueprint and hook phases that ran before a backup failed (a failed action's status shows them).
    public var phases: [PhaseRecord]?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
        self.field = field
    }

    /// A mover that stopped or a claim not bound yet may do better on another try; the rest needs a change.
    public var isTransient: Bool { code == .moverFailed || code == .claimNotBound }

    public var description: String { field.map { "\($0): \(message)" } ?? message }
}
