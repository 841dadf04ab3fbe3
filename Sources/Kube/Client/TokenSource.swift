import Foundation

/// The `Authorization` header value of a connection. A token file is re-read at most once a minute, or
/// at once after the server answered 401 — the kubelet rotates projected service-account tokens in place.
actor TokenSource {
    private let auth: ClusterConnection.Auth
    private var cached: String?
    private var readAt: ContinuousClock.Instant?
    static let refreshInterval: Duration = .seconds(60)

    init(_ auth: ClusterConnection.Auth) {
        self.auth = auth
    }

    /// The header value, or nil when the connection authenticates by certificate or not at all.
    func authorization() throws(KubeError) -> String? {
        switch auth {
        case .none: return nil
        case .bearer(let token): return "Bearer " + token
        case .basic(let user, let password):
            return "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        case .tokenFile(let path):
            if let cached, let readAt, ContinuousClock.now - readAt < Self.refreshInterval {
                return "Bearer " + cached
            }
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw KubeError(.configuration, "cannot read the token file \(path)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw KubeError(.configuration, "the token file \(path) is empty") }
            cached = token
            readAt = .now
            return "Bearer " + token
        }
    }

    /// Forgets a cached file token so the next request reads the file again. Returns whether there was
    /// anything to re-read (a static token cannot get better by retrying).
    func invalidate() -> Bool {
        guard case .tokenFile = auth else { return false }
        cached = nil
        readAt = nil
        return true
    }
}
