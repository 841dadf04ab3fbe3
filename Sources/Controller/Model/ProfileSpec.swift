import Foundation
import Kube
import Repository

/// A Profile's spec: where a repository is, and the Secrets that open it.
public struct ProfileSpec: Sendable, Equatable {
    public enum Location: Sendable, Equatable {
        case filesystem(path: String)
        case s3(bucket: String, prefix: String, endpoint: String?, region: String?, pathStyle: Bool?)

        public var description: String {
            switch self {
            case .filesystem(let path): return path
            case .s3(let bucket, let prefix, let endpoint, _, _):
                return "s3://\(bucket)/\(prefix)" + (endpoint.map { " at \($0)" } ?? "")
            }
        }
    }

    /// Where the repository is; nil for an import Profile until its token is read (`importToken`).
    public var location: Location?
    public var passwordSecret: String
    public var passwordKey: String
    /// An import Profile (`spec.import.tokenSecretRef`): a repository another cluster exports to, opened
    /// read-only with a receive token (its location and key); `passwordSecret` is then that Secret.
    public var importToken: SecretKeyRef?

    public struct SecretKeyRef: Sendable, Equatable {
        public var secret: String
        public var key: String
    }
    public var isImport: Bool { importToken != nil }
    /// `spec.import.insecure`: the receiving administrator accepts a plain-http endpoint in the token (tests).
    public var importInsecure = false
    public var credentialsSecret: String?
    /// Restore points younger than this cannot be deleted (nor their data forgotten).
    public var immutability: TimeInterval?
    /// How long restore points of hand-made BackupActions are kept when the action says nothing.
    public var defaultExpiresAfter: TimeInterval?
    public var isDefault: Bool
    /// `spec.init`: create a repository where the location holds none.
    public var initialize: Bool
    /// The namespaces whose own users' actions may use this Profile; nil: every namespace for the default
    /// Profile, none for another (administrators, who may `use` any Profile, and Policies still can).
    public var namespaceSelector: LabelSelector?

    public init(_ object: KubeObject) throws(ControllerError) {
        let spec = object["spec"] ?? .emptyObject
        if let imported = spec["import"] {
            guard spec["location"] == nil, spec["passwordSecretRef"] == nil, spec["init"]?.bool != true else {
                throw ControllerError("InvalidSpec", "an import Profile takes its location and key from its receive token: give spec.import without spec.location, spec.passwordSecretRef or spec.init")
            }
            guard let name = imported["tokenSecretRef", "name"]?.string, !name.isEmpty else {
                throw ControllerError("InvalidSpec", "spec.import.tokenSecretRef.name is required: the Secret holding the receive token")
            }
            let key = imported["tokenSecretRef", "key"]?.string ?? "token"
            importToken = SecretKeyRef(secret: name, key: key)
            importInsecure = imported["insecure"]?.bool ?? false
            location = nil
            passwordSecret = name
            passwordKey = key
        } else {
            location = try Self.location(spec)
            guard let password = spec["passwordSecretRef", "name"]?.string, !password.isEmpty else {
                throw ControllerError("InvalidSpec", "spec.passwordSecretRef.name is required: the Secret holding the repository password")
            }
            passwordSecret = password
            passwordKey = spec["passwordSecretRef", "key"]?.string ?? "password"
        }
        credentialsSecret = spec["credentialsSecretRef", "name"]?.string
        if case .s3? = location, credentialsSecret == nil {
            throw ControllerError("InvalidSpec", "an S3 location needs spec.credentialsSecretRef (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
        }
        if let text = spec["immutability"]?.string {
            guard let period = Self.period(text) else {
                throw ControllerError("InvalidSpec", "spec.immutability '\(text)' is not a period such as 30m, 12h or 7d")
            }
            immutability = period
        }
        isDefault = spec["default"]?.bool ?? false
        initialize = spec["init"]?.bool ?? false
        if let text = spec["defaultExpiresAfter"]?.string {
            guard let period = Self.period(text) else {
                throw ControllerError("InvalidSpec", "spec.defaultExpiresAfter '\(text)' is not a period such as 30m, 12h or 7d")
            }
            defaultExpiresAfter = period
        }
        if let selector = spec["namespaceSelector"] {
            do {
                namespaceSelector = try LabelSelector(selector)
            } catch {
                throw ControllerError("InvalidSpec", "spec.namespaceSelector: \(error.description)")
            }
        }
    }

    /// `spec.location`, checked.
    static func location(_ spec: JSONValue) throws(ControllerError) -> Location {
        let fs = spec["location", "filesystem"], s3 = spec["location", "s3"]
        switch (fs, s3) {
        case (.some(let fs), nil):
            guard let path = fs["path"]?.string, path.hasPrefix("/") else {
                throw ControllerError("InvalidLocation", "spec.location.filesystem.path must be an absolute path")
            }
            return .filesystem(path: path)
        case (nil, .some(let s3)):
            guard let bucket = s3["bucket"]?.string, !bucket.isEmpty else {
                throw ControllerError("InvalidLocation", "spec.location.s3.bucket is required")
            }
            let endpoint = s3["endpoint"]?.string
            if let endpoint, endpoint.lowercased().hasPrefix("http://"), s3["insecure"]?.bool != true {
                throw ControllerError("InsecureEndpoint", "spec.location.s3.endpoint uses plain http: credentials and data would cross the network readable; use https, or set spec.location.s3.insecure: true for a test endpoint")
            }
            return .s3(bucket: bucket, prefix: s3["prefix"]?.string ?? "", endpoint: endpoint,
                       region: s3["region"]?.string, pathStyle: s3["pathStyle"]?.bool)
        default:
            throw ControllerError("InvalidLocation", "spec.location needs exactly one of filesystem or s3")
        }
    }

    /// Whether users' actions in a namespace with these labels may use the Profile by its selector.
    public func admits(namespaceLabels labels: [String: String]) -> Bool {
        namespaceSelector?.matches(labels) ?? isDefault
    }

    /// A receive token's location as a Profile's.
    /// The location is the issuer's choice, and this cluster's credentials are used there: a plain-http endpoint
    /// only when this Profile says so (`spec.import.insecure`), as for a Profile's own location.
    func location(_ token: ReceiveToken.Location) throws(ControllerError) -> Location {
        if let s3 = token.s3 {
            if let endpoint = s3.endpoint, endpoint.lowercased().hasPrefix("http://"), !importInsecure {
                throw ControllerError("InsecureEndpoint", "the receive token's location \(endpoint) uses plain http: this cluster's S3 credentials and the data would cross the network readable; set spec.import.insecure: true only for a test endpoint")
            }
            return .s3(bucket: s3.bucket, prefix: s3.prefix ?? "", endpoint: s3.endpoint, region: s3.region, pathStyle: s3.pathStyle)
        }
        if let fs = token.filesystem, fs.path.hasPrefix("/") { return .filesystem(path: fs.path) }
        throw ControllerError("TokenRejected", "the receive token names no location")
    }

    /// `90s`, `30m`, `12h`, `7d` → seconds.
    public static func period(_ text: String) -> TimeInterval? { Period.seconds(text) }
}
