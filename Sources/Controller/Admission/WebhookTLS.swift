import Crypto
import Foundation
import Kube
import Logging
import NIOSSL
import SwiftASN1
import X509

/// The admission webhook's TLS identity: a CA of its own and a serving certificate for the webhook's
/// addresses (the Service's DNS names and 127.0.0.1 for host-network installs). It lives in the Secret
/// `cairn-webhook-tls` of the controller's namespace — made by the first replica that needs it, shared by
/// every replica, remade when its addresses change or it has less than 30 days left — and the CA is
/// published as the `caBundle` of the MutatingWebhookConfiguration `cairn`, so the API server trusts
/// only this certificate for the webhook.
struct WebhookTLS: Sendable, Equatable {
    static let secretName = "cairn-webhook-tls"
    static let configurationName = "cairn"
    static let hostsAnnotation = "cairn.dev/hosts"

    var caPEM: String
    var certificatePEM: String
    var keyPEM: String

    /// The names the serving certificate must cover.
    static func hosts(namespace: String, service: String) -> [String] {
        ["\(service).\(namespace).svc", "\(service).\(namespace).svc.cluster.local", "127.0.0.1"]
    }

    /// A new CA (ten years) and a serving certificate signed by it (two years), P-256 keys.
    static func generate(hosts: [String], now: Date = Date()) throws -> WebhookTLS {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("cairn-webhook-ca") }
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PrivateKey(caKey).publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        let key = P256.Signing.PrivateKey()
        let names: [GeneralName] = hosts.map { host in
            if let ip = IPv4Address(host) { return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip.bytes))) }
            return .dnsName(host)
        }
        let serving = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PrivateKey(key).publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(2 * 365 * 86400),
            issuer: caName, subject: try DistinguishedName { CommonName(hosts.first ?? "cairn-webhook") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        return WebhookTLS(caPEM: try ca.serializeAsPEM().pemString,
                          certificatePEM: try serving.serializeAsPEM().pemString,
                          keyPEM: key.pemRepresentation)
    }

    /// Whether the serving certificate still has more than `margin` to run.
    func isFresh(now: Date = Date(), margin: TimeInterval = 30 * 86400) -> Bool {
        guard let certificate = try? Certificate(pemEncoded: certificatePEM) else { return false }
        return certificate.notValidAfter > now.addingTimeInterval(margin)
    }

    func serverContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: configuration)
    }

    /// The identity in the Secret, made (or remade) when missing, stale or for other addresses.
    static func ensure(client: KubeClient, namespace: String, hosts: [String], logger: Logger) async throws -> WebhookTLS {
        let wanted = hosts.joined(separator: ",")
        for _ in 0..<5 {
            var existing: KubeObject?
            do {
                existing = try await client.get(Secret.resource, secretName, namespace: namespace)
            } catch let error as KubeError where error.code == .notFound {}
            if let existing {
                let data = Secret(existing).data
                let tls = WebhookTLS(caPEM: String(decoding: data["ca.crt"] ?? [], as: UTF8.self),
                                     certificatePEM: String(decoding: data["tls.crt"] ?? [], as: UTF8.self),
                                     keyPEM: String(decoding: data["tls.key"] ?? [], as: UTF8.self))
                if existing.annotations[hostsAnnotation] == wanted, tls.isFresh() { return tls }
            }
            let fresh = try generate(hosts: hosts)
            var secret = existing ?? KubeObject(apiVersion: "v1", kind: "Secret", name: secretName, namespace: namespace)
            secret["type"] = "kubernetes.io/tls"
            secret["metadata", "annotations", hostsAnnotation] = .string(wanted)
            secret["metadata", "labels", "app.kubernetes.io/name"] = "cairn"
            secret["data"] = ["ca.crt": .string(Data(fresh.caPEM.utf8).base64EncodedString()),
                              "tls.crt": .string(Data(fresh.certificatePEM.utf8).base64EncodedString()),
                              "tls.key": .string(Data(fresh.keyPEM.utf8).base64EncodedString())]
            do {
                if existing == nil {
                    _ = try await client.create(secret, as: Secret.resource, namespace: namespace)
                } else {
                    _ = try await client.update(secret)
                }
                logger.info("admission.certificate.issued", metadata: ["cairn.hosts": "\(wanted)"])
                return fresh
            } catch let error as KubeError where error.code == .alreadyExists || error.code == .conflict {
                continue   // another replica wrote it meanwhile: use theirs
            }
        }
        throw KubeError(.conflict, "the Secret \(namespace)/\(secretName) kept changing while Cairn wrote it")
    }

    /// Makes the MutatingWebhookConfiguration `cairn` trust this CA (only where it does not already).
    func publish(client: KubeClient) async throws {
        let bundle = JSONValue.string(Data(caPEM.utf8).base64EncodedString())
        for _ in 0..<5 {
            var configuration = try await client.get(Self.webhookConfigurations, Self.configurationName)
            guard var webhooks = configuration["webhooks"]?.array else { return }
            var changed = false
            for i in webhooks.indices where webhooks[i]["clientConfig", "caBundle"] != bundle {
                webhooks[i]["clientConfig", "caBundle"] = bundle
                changed = true
            }
            guard changed else { return }
            configuration["webhooks"] = .array(webhooks)
            do {
                _ = try await client.update(configuration)
                return
            } catch let error as KubeError where error.code == .conflict {
                continue
            }
        }
    }

    static let webhookConfigurations = APIResource(
        group: "admissionregistration.k8s.io", version: "v1", name: "mutatingwebhookconfigurations",
        kind: "MutatingWebhookConfiguration", namespaced: false)
}

/// A dotted IPv4 address.
struct IPv4Address {
    var bytes: [UInt8]

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        self.bytes = bytes
    }
}
