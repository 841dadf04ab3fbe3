import ArgumentParser
import Controller
import Dispatch
import Foundation
import Kube
import Logging
import Protection
import S3Storage
import Server
import Snapshot
import Storage

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Run Cairn's controller: reconcile Profiles, Policies, BackupActions, RestoreActions, RestorePoints and TransformSets.",
        discussion: """
            Normally runs in the cluster as the Deployment of deploy/ (see docs/operations.md). Only the \
            holder of the Lease cairn-controller in its namespace acts; others stand by. Serves /metrics, \
            /healthz and /readyz on --listen. SIGTERM stops gracefully: running actions are left for the \
            successor, which resumes them.
            """)

    @OptionGroup var cluster: ClusterOptions

    @Option(name: .long, help: "The controller's namespace (Profiles, Policies, Lease). Default: $POD_NAMESPACE, the service account's namespace, cairn-system.")
    var namespace: String?

    @Option(name: .long, help: "Address for /metrics, /healthz and /readyz.")
    var listen = "0.0.0.0:9464"

    @Option(name: .long, help: "Image of the mover pods that read and write volumes. Default: $CAIRN_MOVER_IMAGE, else \(MoverVolumeAccess.defaultImage).")
    var moverImage: String?

    @Option(name: .long, help: "Reconcile workers.")
    var workers = 4

    @Option(name: .long, help: "Backups and restores running at once in the cluster; more wait, Queued.")
    var maxRunning = 8

    @Option(name: .long, help: "Backups and restores running at once in one namespace.")
    var maxRunningPerNamespace = 2

    @Option(name: .long, help: "Address of the admission webhook (HTTPS, every replica serves it).")
    var webhookListen = "0.0.0.0:9443"

    @Option(name: .long, help: "The Service in front of the webhook (its DNS names go into the webhook's certificate).")
    var webhookService = "cairn-webhook"

    @Option(name: .long, help: "The controller's service account: its Policies' runs act as it. Default: $POD_SERVICE_ACCOUNT, else cairn-controller.")
    var serviceAccount: String?

    func run() async throws {
        try await runReporting {
            let env = ProcessInfo.processInfo.environment
            let ownNamespace = namespace ?? env["POD_NAMESPACE"]
                ?? (try? String(contentsOfFile: "/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                ?? "cairn-system"
            let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            let identity = "\(env["POD_NAME"] ?? ProcessInfo.processInfo.hostName)_\(suffix)"
            let parts = listen.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]) else {
                throw CLIError.usage("--listen must be HOST:PORT")
            }
            let webhookParts = webhookListen.split(separator: ":")
            guard webhookParts.count == 2, let webhookPort = Int(webhookParts[1]) else {
                throw CLIError.usage("--webhook-listen must be HOST:PORT")
            }
            let logger = Logger(label: "cairn.controller")
            let metrics = ControllerMetrics()
            let probes = ProbeState()
            var options = KubeClient.Options()
            options.qps = cluster.kubeQps > 0 ? min(cluster.kubeQps, 200) : nil
            options.burst = 400
            logger.info("controller.starting", metadata: ["k8s.namespace": "\(ownNamespace)", "cairn.identity": "\(identity)",
                                                         "cairn.version": "\(CairnVersion.current)"])
            return try await KubeClient.with(try cluster.connection(), options: options) { client in
                let controller = Controller(
                    client: client,
                    configuration: .init(namespace: ownNamespace, identity: identity,
                                         moverImage: moverImage ?? env["CAIRN_MOVER_IMAGE"] ?? MoverVolumeAccess.defaultImage,
                                         workers: workers,
                                         serviceAccount: serviceAccount ?? env["POD_SERVICE_ACCOUNT"] ?? "cairn-controller",
                                         maxRunning: maxRunning, maxRunningPerNamespace: maxRunningPerNamespace,
                                         openStore: openProfileStore),
                    metrics: metrics, probes: probes, logger: logger)
                let server = ProbeServer(metrics: metrics, probes: probes, authorizer: MetricsAuthorizer(client: client),
                                         logger: logger)
                let admission = AdmissionServer(client: client, namespace: ownNamespace, service: webhookService,
                                                controllerUser: controller.configuration.controllerUser, logger: logger)
                let main = Task {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await server.run(host: String(parts[0]), port: port) }
                        group.addTask { try await admission.run(host: String(webhookParts[0]), port: webhookPort) }
                        group.addTask { try await controller.run() }
                        // The controller ends on shutdown (returns) or lost leadership (throws).
                        try await group.next()
                        group.cancelAll()
                    }
                }
                let signals = [SIGTERM, SIGINT].map { signo -> DispatchSourceSignal in
                    signal(signo, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: signo)
                    source.setEventHandler {
                        logger.info("controller.signal", metadata: ["cairn.signal": "\(signo)"])
                        main.cancel()
                    }
                    source.resume()
                    return source
                }
                defer { signals.forEach { $0.cancel() } }
                do {
                    try await main.value
                } catch let lost as ControllerError where lost.reason == "LeadershipLost" {
                    logger.error("controller.stopped", metadata: ["reason": "\(lost)"])
                    return 1
                }
                logger.info("controller.stopped")
                return 0
            }
        }
    }
}

/// The storage backends a Profile may name: a directory, or S3 with the keys of its credentials Secret.
@Sendable func openProfileStore(_ location: ProfileSpec.Location, credentials: [String: [UInt8]]) async throws
    -> any BlobStore
{
    switch location {
    case .filesystem(let path):
        return FileBlobStore(root: URL(fileURLWithPath: path))
    case .s3(let bucket, let prefix, let endpoint, let region, let pathStyle):
        func value(_ key: String) -> String? { credentials[key].map { String(decoding: $0, as: UTF8.self) } }
        guard let key = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") else {
            throw ControllerError("SecretInvalid", "the credentials Secret needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        let s3 = try S3Location(url: "s3://\(bucket)/\(prefix)", endpoint: endpoint, region: region, pathStyle: pathStyle,
                                environment: [:])
        return try await S3BlobStore.open(s3, credentials: S3Credentials(accessKeyID: key, secretAccessKey: secret,
                                                                         sessionToken: value("AWS_SESSION_TOKEN")))
    }
}
