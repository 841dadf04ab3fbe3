import Foundation

/// Who made a request, as the API server authenticated them (`authentication.k8s.io/v1` UserInfo): the
/// identity an admission review carries, and the one a client impersonates to act on that person's
/// behalf so that RBAC — escalation checks included — decides exactly as if they had asked themselves.
public struct UserInfo: Sendable, Hashable, Codable {
    public var username: String
    /// Kept for the record; Kubernetes 1.20 cannot impersonate a UID (the `Impersonate-Uid` header came in 1.22).
    public var uid: String?
    public var groups: [String]
    public var extra: [String: [String]]

    public init(username: String, uid: String? = nil, groups: [String] = [], extra: [String: [String]] = [:]) {
        self.username = username
        self.uid = uid
        self.groups = groups
        self.extra = extra
    }

    /// From the `userInfo` of an AdmissionReview request (or a TokenReview status).
    public init?(json: JSONValue?) {
        guard let json, let username = json["username"]?.string, !username.isEmpty else { return nil }
        var extra: [String: [String]] = [:]
        for (key, values) in json["extra"]?.object ?? [:] {
            extra[key] = values.array?.compactMap(\.string) ?? []
        }
        self.init(username: username, uid: json["uid"]?.string,
                  groups: json["groups"]?.array?.compactMap(\.string) ?? [], extra: extra)
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["username": .string(username),
                                           "groups": .array(groups.map { .string($0) })]
        if let uid { object["uid"] = .string(uid) }
        if !extra.isEmpty { object["extra"] = .object(extra.mapValues { .array($0.map { .string($0) }) }) }
        return .object(object)
    }

    /// `system:serviceaccount:<namespace>:<name>`
    public static func serviceAccount(namespace: String, name: String) -> String {
        "system:serviceaccount:\(namespace):\(name)"
    }

    /// The request headers that impersonate this identity. Groups are sent as given (the API server
    /// adds `system:authenticated` itself); extra keys are percent-encoded as the API requires.
    package var impersonationHeaders: [(String, String)] {
        var headers = [("Impersonate-User", username)]
        for group in groups where group != "system:authenticated" { headers.append(("Impersonate-Group", group)) }
        for (key, values) in extra.sorted(by: { $0.key < $1.key }) {
            let name = "Impersonate-Extra-" + (key.addingPercentEncoding(withAllowedCharacters: .headerToken) ?? key)
            for value in values { headers.append((name, value)) }
        }
        return headers
    }
}

extension CharacterSet {
    /// RFC 7230 token characters, minus `%` (which encodes everything else).
    static let headerToken = CharacterSet(charactersIn:
        "!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}
