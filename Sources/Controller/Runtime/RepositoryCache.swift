import Concurrent
import Foundation
import Kube
import Logging
import Repository
import Storage

/// Opens the store a Profile's location names, with the keys of its credentials Secret (empty for a
/// filesystem location). The executable provides it: which storage backends exist is its choice, so the
/// controller does not carry an S3 client. Throws `ControllerError` `SecretInvalid` for missing keys.
public typealias StoreOpener = @Sendable (_ location: ProfileSpec.Location, _ credentials: [String: [UInt8]]) async throws
    -> any BlobStore

/// Open repositories by Profile, reopened when the Profile's spec or one of its Secrets changes.
/// Passwords and keys are read from Secrets in the controller's namespace only and never logged.
public actor RepositoryCache {
    struct Entry {
        var fingerprint: String
        var repository: Repository
        var spec: ProfileSpec
    }

    let client: KubeClient
    let namespace: String
    let openStore: StoreOpener
    let logger: Logger
    var entries: [String: Entry] = [:]
    /// One opening at a time per Profile (a permit each).
    var gates: [String: AsyncSemaphore] = [:]

    public init(client: KubeClient, namespace: String, openStore: @escaping StoreOpener, logger: Logger) {
        self.client = client
        self.namespace = namespace
        self.openStore = openStore
        self.logger = logger
    }

    /// The repository of the Profile `name`, created when the location holds none yet and the Profile
    /// asks for it (`spec.init: true`) — or, for an export's destination (`pairedWith`), paired with the
    /// export's source.
    /// One caller at a time per Profile: of two actions that start together, the second finds the repository
    /// the first opened (or created) instead of racing it to make another.
    public func repository(profile name: String, pairedWith source: Repository? = nil) async throws -> (Repository, ProfileSpec) {
        let gate = gates[name] ?? AsyncSemaphore(permits: 1)
        gates[name] = gate
        try await gate.acquire()
        defer { gate.release() }
        return try await resolve(profile: name, pairedWith: source)
    }

    func resolve(profile name: String, pairedWith source: Repository?) async throws -> (Repository, ProfileSpec) {
        let profile: KubeObject
        do {
            profile = try await client.get(CairnKind.profile.resource, name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            throw ControllerError("ProfileNotFound", "Profile '\(name)' does not exist in namespace \(namespace)")
        }
        let spec = try ProfileSpec(profile)
        let password = try await secret(spec.passwordSecret, profile: name)
        guard let passwordBytes = password.data[spec.passwordKey], !passwordBytes.isEmpty else {
            throw ControllerError("SecretInvalid", "Secret \(namespace)/\(spec.passwordSecret) has no key '\(spec.passwordKey)' with the \(spec.isImport ? "receive token" : "repository password")")
        }
        var fingerprint = "\(profile.generation ?? 0)/\(password.resourceVersion ?? "")"
        var credentials: Secret?
        if let name = spec.credentialsSecret {
            credentials = try await secret(name, profile: profile.name)
            fingerprint += "/\(credentials?.resourceVersion ?? "")"
        }
        if let entry = entries[name], entry.fingerprint == fingerprint {
            return (entry.repository, entry.spec)
        }
        if let token = spec.importToken {
            let (repository, location) = try await openImport(profile: name, spec: spec, token: token, secret: password,
                                                              credentials: credentials)
            var opened = spec
            opened.location = location
            entries[name] = Entry(fingerprint: fingerprint, repository: repository, spec: opened)
            return (repository, opened)
        }
        guard let location = spec.location else { throw ControllerError("InvalidLocation", "Profile '\(name)' has no location") }
        let store = try await openStore(location, credentials?.data ?? [:])
        let passwordText = String(decoding: passwordBytes, as: UTF8.self)
            .trimmingCharacters(in: .newlines)
        let repository: Repository
        do {
            repository = try await Repository.open(store: store, password: passwordText)
        } catch let error as RepositoryError where error.code == .notARepository {
            // Never silently: a Profile pointed at the wrong place would start an empty repository, and the
            // restore-point sync would then drop every RestorePoint object of the Profile.
            guard spec.initialize || source != nil else {
                throw ControllerError("RepositoryNotFound", "there is no repository at \(location.description); set spec.init: true on Profile '\(name)' to create one there")
            }
            logger.info("repository.initialize", metadata: ["cairn.profile": "\(name)", "cairn.location": "\(location.description)"])
            if case .filesystem(let path) = location {
                do {
                    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                } catch {
                    throw ControllerError("RepositoryUnavailable", "cannot create the directory above \(path): \(error.localizedDescription)")
                }
            }
            repository = try await Repository.initialize(store: store, password: passwordText, pairedWith: source)
        } catch let error as RepositoryError where error.code == .wrongPassword {
            throw ControllerError("WrongPassword", "the password in Secret \(namespace)/\(spec.passwordSecret) does not open the repository at \(location.description)")
        } catch let error as RepositoryError {
            throw ControllerError("RepositoryUnavailable", "cannot open the repository at \(location.description): \(error)")
        }
        entries[name] = Entry(fingerprint: fingerprint, repository: repository, spec: spec)
        return (repository, spec)
    }

    /// An import Profile's repository: the location and key its receive token names, opened only if the
    /// token is intact, unexpired, not revoked and for this cluster.
    func openImport(profile name: String, spec: ProfileSpec, token ref: ProfileSpec.SecretKeyRef, secret: Secret,
                    credentials: Secret?) async throws -> (Repository, ProfileSpec.Location) {
        let text = String(decoding: secret.data[ref.key] ?? [], as: UTF8.self)
        do {
            let token = try ReceiveToken.decode(text)
            let location = try spec.location(token.location)
            let store = try await openStore(location, credentials?.data ?? [:])
            let repository = try await token.open(store: store, clusterID: try await clusterID())
            return (repository, location)
        } catch let error as RepositoryError where error.code == .tokenRejected {
            throw ControllerError("TokenRejected", "the receive token in Secret \(namespace)/\(ref.secret) (key \(ref.key)) is refused: \(error.message)")
        } catch let error as RepositoryError {
            throw ControllerError("RepositoryUnavailable", "cannot open the repository of the receive token in Secret \(namespace)/\(ref.secret): \(error)")
        }
    }

    var knownClusterID: String?

    /// This cluster's identity: the UID of its kube-system namespace.
    func clusterID() async throws -> String {
        if let knownClusterID { return knownClusterID }
        let uid = try await client.get(Namespace.resource, "kube-system").uid ?? ""
        knownClusterID = uid
        return uid
    }

    /// Forgets an open repository (after an error that may mean it changed underneath).
    public func invalidate(profile name: String) {
        entries[name] = nil
    }

    func secret(_ name: String, profile: String) async throws -> Secret {
        do {
            return Secret(try await client.get(Secret.resource, name, namespace: namespace))
        } catch let error as KubeError where error.code == .notFound {
            throw ControllerError("SecretNotFound", "Secret \(namespace)/\(name) named by Profile '\(profile)' does not exist")
        }
    }
}
