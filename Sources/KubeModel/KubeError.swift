import Foundation

/// Every failure of the Kubernetes client: what the API server said (decoded from its `Status`), or why
/// the client could not ask. `code` is stable and what callers switch on; `description` is for people and
/// never contains a credential.
public struct KubeError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case notFound, alreadyExists, conflict, forbidden, unauthorized, invalid, badRequest, gone
        case methodNotAllowed, unsupportedMediaType, tooManyRequests, timeout, serverError, unavailable
        /// The connection failed or dropped.
        case transport
        /// The server's certificate is not trusted, or not for its address. Not retried.
        case tls
        /// Kubeconfig or in-cluster configuration is missing or wrong.
        case configuration
        /// The server answered with something that is not what the API promises.
        case decoding
        /// No resource type of that name, kind or group/version is served.
        case unknownResource
        case cancelled
        /// `exec` reached the container but the command could not be started.
        case execFailed
    }

    /// One field-level reason of an `Invalid` (422) answer.
    public struct Cause: Sendable, Equatable {
        public var field: String
        public var reason: String
        public var message: String

        public init(field: String, reason: String, message: String) {
            self.field = field
            self.reason = reason
            self.message = message
        }
    }

    public var code: Code
    public var message: String
    /// The `reason` of the server's `Status` (e.g. `Forbidden`), when there was one.
    public var reason: String?
    public var httpStatus: Int?
    public var causes: [Cause]
    /// Seconds the server asked us to wait (Retry-After / `details.retryAfterSeconds`).
    public var retryAfter: Double?
    /// What was being done, e.g. `create configmaps in namespace team-a`.
    public var operation: String?

    public init(_ code: Code, _ message: String, reason: String? = nil, httpStatus: Int? = nil, causes: [Cause] = [],
                retryAfter: Double? = nil, operation: String? = nil) {
        self.code = code
        self.message = message
        self.reason = reason
        self.httpStatus = httpStatus
        self.causes = causes
        self.retryAfter = retryAfter
        self.operation = operation
    }

    /// Worth retrying the same request later: throttling, a server or connection failure.
    public var isTransient: Bool {
        switch code {
        case .tooManyRequests, .timeout, .serverError, .unavailable, .transport: return true
        default: return false
        }
    }

    public var description: String {
        var text = operation.map { "\($0): " } ?? ""
        text += message
        if !causes.isEmpty, !causes.allSatisfy({ message.contains($0.message) }) {
            text += " (" + causes.map { "\($0.field): \($0.message)" }.joined(separator: "; ") + ")"
        }
        if let hint { text += " — " + hint }
        return text
    }

    private var hint: String? {
        switch code {
        case .unauthorized: return "the credentials were rejected; check the kubeconfig's user or refresh its token"
        case .forbidden: return "ask a cluster administrator for a role that allows it"
        case .conflict where reason == "Conflict": return "the object changed since it was read; read it again and retry"
        case .transport: return "check that the API server is reachable and the kubeconfig's server address is right"
        case .tls: return "check the kubeconfig's certificate-authority for this cluster"
        default: return nil
        }
    }

    /// Decodes the API server's answer to a failed request. `body` is normally a `Status` object; when it is
    /// not (a proxy's page, an empty body) the HTTP status decides.
    package static func fromResponse(status: Int, body: [UInt8], retryAfterHeader: String?, operation: String) -> KubeError {
        let json = try? JSONValue(parsing: body)
        var message = json?["message"]?.string ?? ""
        let reason = json?["reason"]?.string
        let code = json?["code"]?.int.map(Int.init) ?? status
        var causes: [Cause] = []
        for cause in json?["details", "causes"]?.array ?? [] {
            causes.append(Cause(field: cause["field"]?.string ?? "", reason: cause["reason"]?.string ?? "",
                                message: cause["message"]?.string ?? ""))
        }
        var retryAfter = retryAfterHeader.flatMap(Double.init)
        if let seconds = json?["details", "retryAfterSeconds"]?.double { retryAfter = retryAfter ?? seconds }
        if message.isEmpty {
            let snippet = String(decoding: body.prefix(200), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            message = "the server answered HTTP \(status)" + (snippet.isEmpty ? "" : ": \(snippet)")
        }
        return KubeError(Self.code(httpStatus: code, reason: reason), message, reason: reason, httpStatus: code,
                         causes: causes, retryAfter: retryAfter, operation: operation)
    }

    static func code(httpStatus: Int, reason: String?) -> Code {
        switch reason {
        case "NotFound": return .notFound
        case "AlreadyExists": return .alreadyExists
        case "Conflict": return .conflict
        case "Forbidden": return .forbidden
        case "Unauthorized": return .unauthorized
        case "Invalid": return .invalid
        case "Gone", "Expired": return .gone
        case "TooManyRequests": return .tooManyRequests
        case "Timeout", "ServerTimeout": return .timeout
        case "ServiceUnavailable": return .unavailable
        case "MethodNotAllowed": return .methodNotAllowed
        case "UnsupportedMediaType": return .unsupportedMediaType
        case "BadRequest": return .badRequest
        case "InternalError": return .serverError
        default: break
        }
        switch httpStatus {
        case 400: return .badRequest
        case 401: return .unauthorized
        case 403: return .forbidden
        case 404: return .notFound
        case 405: return .methodNotAllowed
        case 409: return .conflict
        case 410: return .gone
        case 415: return .unsupportedMediaType
        case 422: return .invalid
        case 429: return .tooManyRequests
        case 503: return .unavailable
        case 504: return .timeout
        default: return .serverError
        }
    }
}
