import Foundation

/// A kubeconfig as kubectl reads it: clusters, users and contexts from one or several files.
///
/// Several files (`KUBECONFIG=a:b`) merge like kubectl: the first file to define a cluster, user or
/// context by a name wins, and the first file that sets `current-context` decides it. Paths inside a
/// file (`certificate-authority`, `client-key`, `tokenFile`) are relative to that file.
public struct KubeConfig: Sendable {
    public struct Cluster: Sendable, Equatable {
        public var server: String
        public var certificateAuthority: String?
        public var certificateAuthorityData: [UInt8]?
        public var insecureSkipTLSVerify: Bool
        public var tlsServerName: String?
    }

    public struct User: Sendable, Equatable {
        public var token: String?
        public var tokenFile: String?
        public var clientCertificate: String?
        public var clientCertificateData: [UInt8]?
        public var clientKey: String?
        public var clientKeyData: [UInt8]?
        public var username: String?
        public var password: String?
        /// An `exec` or `auth-provider` plugin named by the file; not supported, reported when chosen.
        public var plugin: String?
    }

    public struct Context: Sendable, Equatable {
        public var cluster: String
        public var user: String
        public var namespace: String?
    }

    public var clusters: [String: Cluster] = [:]
    public var users: [String: User] = [:]
    public var contexts: [String: Context] = [:]
    public var currentContext: String?
    /// The files this configuration was read from, in merge order.
    public var files: [String] = []

    public init() {}

    /// Reads one kubeconfig document. `directory` anchors relative paths.
    public init(yaml text: String, directory: String, file: String = "kubeconfig") throws(KubeError) {
        let document: JSONValue
        do {
            document = try JSONValue(yaml: text)
        } catch {
            throw KubeError(.configuration, "\(file) is not a valid kubeconfig: \(error.description)")
        }
        if document.isNull { return }
        guard document.object != nil else {
            throw KubeError(.configuration, "\(file) is not a valid kubeconfig: expected a mapping at the top")
        }
        func path(_ value: JSONValue?) -> String? {
            guard let p = value?.string, !p.isEmpty else { return nil }
            return p.hasPrefix("/") ? p : directory + "/" + p
        }
        func data(_ value: JSONValue?, _ what: String) throws(KubeError) -> [UInt8]? {
            guard let text = value?.string, !text.isEmpty else { return nil }
            guard let d = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
                throw KubeError(.configuration, "\(file): \(what) is not valid base64")
            }
            return Array(d)
        }
        func named(_ key: String) throws(KubeError) -> [(String, JSONValue)] {
            guard let list = document[key] else { return [] }
            guard let array = list.array else {
                throw KubeError(.configuration, "\(file): '\(key)' must be a list")
            }
            var result: [(String, JSONValue)] = []
            for entry in array {
                guard let name = entry["name"]?.string else {
                    throw KubeError(.configuration, "\(file): an entry of '\(key)' has no name")
                }
                result.append((name, entry))
            }
            return result
        }
        for (name, entry) in try named("clusters") {
            let c = entry["cluster"] ?? .emptyObject
            guard let server = c["server"]?.string, !server.isEmpty else {
                throw KubeError(.configuration, "\(file): cluster '\(name)' has no server address")
            }
            clusters[name] = Cluster(
                server: server, certificateAuthority: path(c["certificate-authority"]),
                certificateAuthorityData: try data(c["certificate-authority-data"], "cluster '\(name)' CA data"),
                insecureSkipTLSVerify: c["insecure-skip-tls-verify"]?.bool ?? false,
                tlsServerName: c["tls-server-name"]?.string)
        }
        for (name, entry) in try named("users") {
            let u = entry["user"] ?? .emptyObject
            var plugin: String?
            if let command = u["exec", "command"]?.string { plugin = "exec plugin '\(command)'" }
            if let provider = u["auth-provider", "name"]?.string { plugin = "auth-provider '\(provider)'" }
            users[name] = User(
                token: u["token"]?.string, tokenFile: path(u["tokenFile"]),
                clientCertificate: path(u["client-certificate"]),
                clientCertificateData: try data(u["client-certificate-data"], "user '\(name)' certificate data"),
                clientKey: path(u["client-key"]),
                clientKeyData: try data(u["client-key-data"], "user '\(name)' key data"),
                username: u["username"]?.string, password: u["password"]?.string, plugin: plugin)
        }
        for (name, entry) in try named("contexts") {
            let c = entry["context"] ?? .emptyObject
            contexts[name] = Context(cluster: c["cluster"]?.string ?? "", user: c["user"]?.string ?? "",
                                     namespace: c["namespace"]?.string)
        }
        if let current = document["current-context"]?.string, !current.isEmpty { currentContext = current }
        files = [file]
    }

    /// Reads a kubeconfig file.
    public init(contentsOfFile file: String) throws(KubeError) {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw KubeError(.configuration, "cannot read kubeconfig \(file): \(Self.reason(error))")
        }
        try self.init(yaml: text, directory: (file as NSString).deletingLastPathComponent, file: file)
    }

    /// Merges `other` under this configuration: entries already present win.
    public mutating func merge(_ other: KubeConfig) {
        clusters.merge(other.clusters) { mine, _ in mine }
        users.merge(other.users) { mine, _ in mine }
        contexts.merge(other.contexts) { mine, _ in mine }
        if currentContext == nil { currentContext = other.currentContext }
        files += other.files
    }

    /// The files of `KUBECONFIG` (colon-separated, missing ones skipped as kubectl does), merged.
    public static func load(paths: [String]) throws(KubeError) -> KubeConfig {
        var config = KubeConfig()
        var read = 0
        for path in paths where !path.isEmpty {
            guard FileManager.default.fileExists(atPath: path) else { continue }
            config.merge(try KubeConfig(contentsOfFile: path))
            read += 1
        }
        guard read > 0 else {
            throw KubeError(.configuration, "no kubeconfig found at \(paths.joined(separator: ", "))")
        }
        return config
    }

    /// The connection a context describes (the current context when `context` is nil).
    public func connection(context name: String? = nil) throws(KubeError) -> ClusterConnection {
        guard let contextName = name ?? currentContext else {
            throw KubeError(.configuration, "the kubeconfig (\(files.joined(separator: ", "))) sets no current-context; "
                            + "name a context (known: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let context = contexts[contextName] else {
            throw KubeError(.configuration, "context '\(contextName)' is not in the kubeconfig "
                            + "(known: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let cluster = clusters[context.cluster] else {
            throw KubeError(.configuration, "context '\(contextName)' names cluster '\(context.cluster)', which the kubeconfig does not define")
        }
        let user = context.user.isEmpty ? User() : users[context.user]
        guard let user else {
            throw KubeError(.configuration, "context '\(contextName)' names user '\(context.user)', which the kubeconfig does not define")
        }
        if let plugin = user.plugin, user.token == nil, user.tokenFile == nil, user.clientCertificate == nil,
           user.clientCertificateData == nil {
            throw KubeError(.configuration, "user '\(context.user)' authenticates through an \(plugin), which Cairn does not run; "
                            + "use a token, a token file or a client certificate")
        }
        func read(_ path: String?, _ data: [UInt8]?, _ what: String) throws(KubeError) -> [UInt8]? {
            if let data { return data }
            guard let path else { return nil }
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw KubeError(.configuration, "cannot read the \(what) \(path) named by context '\(contextName)'")
            }
            return Array(contents)
        }
        var auth = ClusterConnection.Auth.none
        if let token = user.token, !token.isEmpty {
            auth = .bearer(token)
        } else if let file = user.tokenFile {
            auth = .tokenFile(file)
        } else if let username = user.username, let password = user.password {
            auth = .basic(username: username, password: password)
        }
        let certificate = try read(user.clientCertificate, user.clientCertificateData, "client certificate")
        let key = try read(user.clientKey, user.clientKeyData, "client key")
        if (certificate == nil) != (key == nil) {
            throw KubeError(.configuration, "user '\(context.user)' has a client certificate without its key, or a key without its certificate")
        }
        return try ClusterConnection(
            server: cluster.server,
            certificateAuthorityPEM: try read(cluster.certificateAuthority, cluster.certificateAuthorityData,
                                              "certificate authority"),
            insecureSkipTLSVerify: cluster.insecureSkipTLSVerify, tlsServerName: cluster.tlsServerName,
            clientCertificatePEM: certificate, clientKeyPEM: key, auth: auth,
            namespace: context.namespace ?? "default", contextName: contextName,
            userName: context.user.isEmpty ? nil : context.user)
    }

    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSCocoaErrorDomain && ns.code == NSFileReadNoSuchFileError { return "no such file" }
        if ns.domain == NSCocoaErrorDomain && ns.code == NSFileReadNoPermissionError { return "permission denied" }
        return ns.localizedDescription
    }
}
