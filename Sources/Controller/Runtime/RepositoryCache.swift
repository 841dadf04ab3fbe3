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

    public init(client: KubeClient, namespace: String, openStore: @escaping StoreOpener, logger: Logger) {
        self.client = client
        self.namespace = namespace
        self.openStore = openStore
        self.logger = logger
    }

    /// The repository of the Profile `name`, created when the location holds none yet and the Profile
    /// asks for it (`spec.init: true`) — or, for an export's destination (`pairedWith`), paired with the
    /// export's source.
    public func repository(profile name: String, pairedWith source: Repository? = nil) async throws -> (Repository, ProfileSpec) {
        let profile: KubeObject
        do {
            profile = try await client.get(CairnKind.profile.resource, name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            throw ControllerError("ProfileNotFound", "Profile '\(name)' does not exist in namespace \(namespace)")
        }
        let spec = try ProfileSpec(profile)
        let password = try await secret(spec.passwordSecret, profile: name)
        guard let passwordBytes = password.data[spec.passwordKey], !passwordBytes.isEmpty else {
            throw ControllerError("SecretInvalid", "Secret \(namespace)/\(spec.passwordSecret) has no key '\(spec.passwordKey)' with the repository password")
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
        let store = try await openStore(spec.location, credentials?.data ?? [:])
        let passwordText = String(decoding: passwordBytes, as: UTF8.self)
            .trimmingCharacters(in: .newlines)
        let repository: Repository
        do {
            repository = try await Repository.open(store: store, password: passwordText)
        } catch let error as RepositoryError where error.code == .notARepository {
            // Never silently: a Profile pointed at the wrong place would start an empty repository, and the
            // restore-point sync would then drop every RestorePoint object of the Profile.
            guard spec.initialize || source != nil else {
                throw ControllerError("RepositoryNotFound", "there is no repository at \(spec.location.description); set spec.init: true on Profile '\(name)' to create one there")
            }
            logger.info("repository.initialize", metadata: ["cairn.profile": "\(name)", "cairn.location": "\(spec.location.description)"])
            if case .filesystem(let path) = spec.location {
                do {
                    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                } catch {
                    throw ControllerError("RepositoryUnavailable", "cannot create the directory above \(path): \(error.localizedDescription)")
                }
            }
            repository = try await Repository.initialize(store: store, password: passwordText, pairedWith: source)
        } catch let error as RepositoryError where error.code == .wrongPassword {
            throw ControllerError("WrongPassword", "the password in Secret \(namespace)/\(spec.passwordSecret) does not open the repository at \(spec.location.description)")
        } catch let error as RepositoryError {
            throw ControllerError("RepositoryUnavailable", "cannot open the repository at \(spec.location.description): \(error)")
        }
        entries[name] = Entry(fingerprint: fingerprint, repository: repository, spec: spec)
        return (repository, spec)
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
