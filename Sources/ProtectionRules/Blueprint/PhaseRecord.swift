import Foundation

/// What one phase of a blueprint or hook did, as recorded in the restore point and the action's status:
/// never its output (that may hold data), only how it ended and the last lines of its stderr, with the
/// values of the Secrets it used redacted.
public struct PhaseRecord: Codable, Sendable, Equatable {
    /// The blueprint's name, or `hooks`.
    public var blueprint: String
    public var action: String
    public var phase: String
    /// `Kind/name` of the workload the blueprint is bound to.
    public var workload: String?
    public var pod: String?
    /// succeeded, failed (the action failed), ignored (failed with `onError: continue`).
    public var result: String
    public var exitCode: Int32?
    public var seconds: Double
    public var message: String?
    /// Bytes of the artifact stored (`output: artifact`) or streamed back (`input`).
    public var artifactBytes: UInt64?
    /// Bytes of the artifact as the command wrote them, when it compressed them (`outputEncoding`).
    public var artifactStreamedBytes: UInt64?

    public init(blueprint: String, action: String, phase: String, workload: String? = nil, pod: String? = nil, result: String,
                exitCode: Int32? = nil, seconds: Double, message: String? = nil, artifactBytes: UInt64? = nil) {
        self.blueprint = blueprint
        self.action = action
        self.phase = phase
        self.workload = workload
        self.pod = pod
        self.result = result
        self.exitCode = exitCode
        self.seconds = seconds
        self.message = message
        self.artifactBytes = artifactBytes
    }
}
