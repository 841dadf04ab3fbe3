import Foundation
import Kube
import Logging
import Server

/// Cairn's admission webhook (`POST /admission`, HTTPS): reviews BackupActions and RestoreActions as they
/// are created and changed (`ActionAdmission`). Every replica serves it, leader or not: the API server may
/// call any of them. Its TLS identity comes from `WebhookTLS`.
public struct AdmissionServer: Sendable {
    let client: KubeClient
    let namespace: String
    let service: String
    let admission: ActionAdmission
    let logger: Logger

    public init(client: KubeClient, namespace: String, service: String, controllerUser: String, logger: Logger) {
        self.client = client
        self.namespace = namespace
        self.service = service
        self.admission = ActionAdmission(controllerUser: controllerUser)
        self.logger = logger
    }

    public func run(host: String, port: Int) async throws {
        var attempt = 0
        let tls: WebhookTLS
        while true {
            do {
                tls = try await WebhookTLS.ensure(client: client, namespace: namespace,
                                                  hosts: WebhookTLS.hosts(namespace: namespace, service: service),
                                                  logger: logger)
                break
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 12 == 0 {
                    logger.warning("admission.certificate.failed", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(5))
            }
        }
        do {
            try await tls.publish(client: client)
        } catch {
            // Served anyway: an administrator may apply the configuration later (the next start publishes).
            logger.warning("admission.configuration.unpublished", metadata: [
                "cairn.webhook": "\(WebhookTLS.configurationName)", "error": "\(error)"])
        }
        let admission = admission
        try await HTTPEndpoint(name: "admission", maxBody: 3 << 20, tls: try tls.serverContext(), logger: logger) { request in
            guard request.method == .POST, request.path == "/admission" else {
                return .text(.notFound, "POST AdmissionReview objects to /admission\n")
            }
            guard let review = try? JSONValue(parsing: request.body), review["request"] != nil else {
                return .text(.badRequest, "the body is not an AdmissionReview\n")
            }
            return HTTPEndpoint.Response(status: .ok, contentType: "application/json",
                                         body: admission.respond(to: review).serialized())
        }.run(host: host, port: port)
    }
}
