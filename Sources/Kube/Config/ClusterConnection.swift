import Foundation

/// Everything needed to talk to one API server as one user: address, trust, credentials, default
/// namespace. Built from a kubeconfig context or from a pod's service account.
public struct ClusterConnection: Sendable {
    public enum Auth: Sendable, Equatable {
        case none
        case bearer(String)
        /// A token file, re-read when it changes (service-account tokens are rotated by the kubelet).
        case tokenFile(String)
        case basic(username: String, password: String)
    }

    public var scheme: String
    public var host: String
    public var port: Int
    /// A path prefix of the server URL (API servers behind a proxy), without a trailing slash.
    public var basePath: String
    public var certificateAuthorityPEM: [UInt8]?
    public var insecureSkipTLSVerify: Bool
    public var tlsServerName: String?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var auth: Auth
    public var namespace: String
    public var contextName: String?
    public var userName: String?

    public init(server: String, certificateAuthorityPEM: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false,
                tlsServerName: String? = nil, clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil,
                auth: Auth = .none, namespace: String = "default", contextName: String? = nil,
                userName: String? = nil) throws(KubeError) {
        guard let url = URLComponents(string: server), let scheme = url.scheme?.lowercased(),
              scheme == "https" || scheme == "http", let host = url.host, !host.isEmpty
        else {
            throw KubeError(.configuration, "the server address '\(server)' is not an http(s) URL")
        }
        self.scheme = scheme
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = url.port ?? (scheme == "https" ? 443 : 80)
        var path = url.path
        while path.hasSuffix("/") { path.removeLast() }
        self.basePath = path
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.auth = auth
        self.namespace = namespace
        self.contextName = contextName
        self.userName = userName
    }

    /// The server's base URL, e.g. `https://10.254.1.2:6443`.
    public var server: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(h):\(port)\(basePath)"
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The configuration of a pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted token
    /// (re-read when the kubelet rotates it), CA and namespace.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 directory: String = serviceAccountDirectory) throws(KubeError) -> ClusterConnection {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw KubeError(.configuration, "not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        }
        let tokenPath = directory + "/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubeError(.configuration, "no service-account token at \(tokenPath); is automountServiceAccountToken off?")
        }
        let ca = FileManager.default.contents(atPath: directory + "/ca.crt").map(Array.init)
        let namespace = (try? String(contentsOfFile: directory + "/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let h = host.contains(":") ? "[\(host)]" : host
        var connection = try ClusterConnection(server: "https://\(h):\(port)", certificateAuthorityPEM: ca,
                                               auth: .tokenFile(tokenPath), namespace: namespace ?? "default")
        connection.userName = ServiceAccountToken.subject(ofFile: tokenPath)
        return connection
    }

    /// Where a client finds its cluster, in the order controllers use: an explicit kubeconfig, then
    /// `KUBECONFIG`, then the pod's service account, then `~/.kube/config`.
    public static func resolve(kubeconfig: String? = nil, context: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment,
                               serviceAccountDirectory: String = serviceAccountDirectory) throws(KubeError)
        -> ClusterConnection
    {
        if let kubeconfig {
            return try KubeConfig.load(paths: [kubeconfig]).connection(context: context)
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try KubeConfig.load(paths: list.split(separator: ":").map(String.init)).connection(context: context)
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil && context == nil {
            return try inCluster(environment: environment, directory: serviceAccountDirectory)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let path = home + "/.kube/config"
        guard FileManager.default.fileExists(atPath: path) else {
            throw KubeError(.configuration, "no cluster configured: set KUBECONFIG or name a kubeconfig file, create \(path), "
                            + "or run in a pod with a service account")
        }
        return try KubeConfig.load(paths: [path]).connection(context: context)
    }
}

/// Reads the subject of a service-account JWT for display (`system:serviceaccount:ns:name`). The token
/// is not verified — the API server does that — and never printed.
enum ServiceAccountToken {
    static func subject(ofFile path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return subject(ofToken: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func subject(ofToken token: String) -> String? {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var payload = String(parts[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        guard let data = Data(base64Encoded: payload), let json = try? JSONValue(parsing: Array(data)) else { return nil }
        return json["sub"]?.string
    }
}
