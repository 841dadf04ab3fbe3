import Foundation
@testable import Kube
import TestSupport
import Testing

@Suite("Client logic without a server: kubeconfig, errors, retries, rate limit, discovery parsing")
struct ClientLogicTests {
    @Test("KUBECONFIG files merge like kubectl: first definition wins, paths are relative to their file")
    func mergeKubeconfigs() async throws {
        let dir = try TemporaryDirectory()
        let ca = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"
        try FileManager.default.createDirectory(atPath: dir.path + "/a/pki", withIntermediateDirectories: true)
        try ca.write(toFile: dir.path + "/a/pki/ca.crt", atomically: true, encoding: .utf8)
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: one
              cluster: {server: "https://10.0.0.1:6443", certificate-authority: pki/ca.crt}
            users:
            - name: u1
              user: {token: first-token}
            contexts:
            - name: ctx
              context: {cluster: one, user: u1, namespace: apps}
            """.write(toFile: dir.path + "/a/config", atomically: true, encoding: .utf8)
        try """
            clusters:
            - name: one
              cluster: {server: "https://10.9.9.9:6443"}
            - name: two
              cluster: {server: "https://[fd00::1]:443/prefix/", insecure-skip-tls-verify: true}
            users:
            - name: u1
              user: {token: second-token}
            - name: u2
              user: {tokenFile: token}
            - name: plugin
              user: {exec: {command: aws-iam-authenticator}}
            contexts:
            - {name: ctx2, context: {cluster: two, user: u2}}
            - {name: p, context: {cluster: two, user: plugin}}
            - {name: broken, context: {cluster: three, user: u2}}
            current-context: ctx2
            """.write(toFile: dir.path + "/b", atomically: true, encoding: .utf8)
        let env = ["KUBECONFIG": "\(dir.path)/missing:\(dir.path)/a/config:\(dir.path)/b"]
        let c = try ClusterConnection.resolve(environment: env)
        // current-context came from the second file; the first file's cluster "one" and user "u1" win.
        #expect(c.contextName == "ctx2")
        #expect(c.host == "fd00::1" && c.port == 443 && c.basePath == "/prefix" && c.insecureSkipTLSVerify)
        #expect(c.auth == .tokenFile(((dir.path + "/b") as NSString).deletingLastPathComponent + "/token"))
        #expect(c.namespace == "default")
        let first = try ClusterConnection.resolve(context: "ctx", environment: env)
        #expect(first.server == "https://10.0.0.1:6443")
        #expect(first.auth == .bearer("first-token"))
        #expect(first.namespace == "apps")
        #expect(first.certificateAuthorityPEM == Array(ca.utf8))
        #expect(!first.insecureSkipTLSVerify)

        let missing = await caught(KubeError.self) { _ = try ClusterConnection.resolve(context: "nope", environment: env) }
        #expect(missing?.code == .configuration)
        #expect(missing?.description.contains("known: broken, ctx, ctx2, p") == true)
        let plugin = await caught(KubeError.self) { _ = try ClusterConnection.resolve(context: "p", environment: env) }
        #expect(plugin?.description.contains("exec plugin 'aws-iam-authenticator'") == true)
        let broken = await caught(KubeError.self) { _ = try ClusterConnection.resolve(context: "broken", environment: env) }
        #expect(broken?.description.contains("cluster 'three'") == true)
    }

    @Test("malformed kubeconfig files are clear errors naming the file")
    func malformedKubeconfig() async throws {
        let dir = try TemporaryDirectory()
        for (name, text, expected) in [
            ("yaml", "clusters: [ {name: x", "malformed YAML"),
            ("list", "clusters: {name: x}", "'clusters' must be a list"),
            ("noserver", "clusters: [{name: x, cluster: {}}]", "has no server address"),
            ("base64", "clusters: [{name: x, cluster: {server: 'https://a', certificate-authority-data: '%%%'}}]",
             "not valid base64"),
        ] {
            let path = dir.path + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let error = await caught(KubeError.self) { _ = try KubeConfig.load(paths: [path]) }
            #expect(error?.code == .configuration)
            #expect(error?.description.contains(path) == true, "\(String(describing: error))")
            #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        }
        let none = await caught(KubeError.self) {
            _ = try ClusterConnection.resolve(environment: ["HOME": dir.path])
        }
        #expect(none?.description.contains("no cluster configured") == true)
    }

    @Test("in-cluster configuration reads the service account's token, CA and namespace")
    func inCluster() async throws {
        let dir = try TemporaryDirectory()
        // A JWT whose payload is {"sub":"system:serviceaccount:apps:cairn"} (signature irrelevant here).
        let payload = Data(#"{"sub":"system:serviceaccount:apps:cairn"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "")
        try "eyJhbGciOiJSUzI1NiJ9.\(payload).c2ln\n".write(toFile: dir.path + "/token", atomically: true, encoding: .utf8)
        try "apps".write(toFile: dir.path + "/namespace", atomically: true, encoding: .utf8)
        let c = try ClusterConnection.resolve(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: dir.path)
        #expect(c.server == "https://10.96.0.1:443")
        #expect(c.namespace == "apps")
        #expect(c.userName == "system:serviceaccount:apps:cairn")
        #expect(c.auth == .tokenFile(dir.path + "/token"))
        let noToken = await caught(KubeError.self) {
            _ = try ClusterConnection.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"],
                                                directory: dir.path + "/nothing")
        }
        #expect(noToken?.description.contains("no service-account token") == true)
    }

    @Test("a Status answer becomes a typed error with reason, causes and Retry-After")
    func statusDecoding() {
        func decode(_ status: Int, _ body: String, retryAfter: String? = nil) -> KubeError {
            KubeError.fromResponse(status: status, body: Array(body.utf8), retryAfterHeader: retryAfter, operation: "test")
        }
        #expect(decode(404, #"{"kind":"Status","status":"Failure","message":"configmaps \"x\" not found","reason":"NotFound","code":404}"#).code == .notFound)
        #expect(decode(409, #"{"reason":"AlreadyExists","code":409,"message":"exists"}"#).code == .alreadyExists)
        #expect(decode(409, #"{"reason":"Conflict","code":409,"message":"modified"}"#).code == .conflict)
        let invalid = decode(422, #"{"reason":"Invalid","code":422,"message":"ConfigMap \"Bad\" is invalid","details":{"causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"Bad\"","field":"metadata.name"}]}}"#)
        #expect(invalid.code == .invalid)
        #expect(invalid.causes == [.init(field: "metadata.name", reason: "FieldValueInvalid", message: "Invalid value: \"Bad\"")])
        #expect(invalid.description.contains("metadata.name"))
        let throttled = decode(429, #"{"reason":"TooManyRequests","code":429,"message":"slow down","details":{"retryAfterSeconds":2}}"#, retryAfter: "1")
        #expect(throttled.code == .tooManyRequests && throttled.retryAfter == 1 && throttled.isTransient)
        let proxy = decode(502, "<html>Bad Gateway</html>")
        #expect(proxy.code == .serverError && proxy.isTransient)
        #expect(proxy.description.contains("HTTP 502"))
        #expect(decode(403, #"{"reason":"Forbidden","code":403,"message":"no"}"#).description.contains("ask a cluster administrator"))
    }

    @Test("retries: 429 for every verb, 5xx and dropped connections only when idempotent, within the budget")
    func retryPolicy() {
        let policy = RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(100), maxDelay: .seconds(1), budget: .seconds(10))
        let unavailable = KubeError(.unavailable, "down")
        let throttled = KubeError(.tooManyRequests, "slow", retryAfter: 3)
        let dropped = KubeError(.transport, "reset")
        let notFound = KubeError(.notFound, "gone")
        #expect(policy.decide(after: unavailable, attempt: 1, idempotent: true, elapsed: .zero, random: 0.5) == .retry(after: .milliseconds(50)))
        #expect(policy.decide(after: unavailable, attempt: 3, idempotent: true, elapsed: .zero, random: 1) == .retry(after: .milliseconds(400)))
        #expect(policy.decide(after: unavailable, attempt: 4, idempotent: true, elapsed: .zero, random: 0.5) == .fail)
        #expect(policy.decide(after: unavailable, attempt: 1, idempotent: false, elapsed: .zero, random: 0.5) == .fail)
        #expect(policy.decide(after: dropped, attempt: 1, idempotent: false, elapsed: .zero, random: 0.5) == .fail)
        #expect(policy.decide(after: dropped, attempt: 1, idempotent: true, elapsed: .zero, random: 0.5) != .fail)
        // Retry-After is honoured (capped at twice the longest wait).
        #expect(policy.decide(after: throttled, attempt: 1, idempotent: false, elapsed: .zero, random: 0.1) == .retry(after: .seconds(2)))
        let admissionWait = KubeError(.timeout, "retry after the token is created", httpStatus: 500, retryAfter: 1)
        #expect(policy.decide(after: admissionWait, attempt: 1, idempotent: false, elapsed: .zero, random: 0.1) == .retry(after: .seconds(1)))
        #expect(policy.decide(after: notFound, attempt: 1, idempotent: true, elapsed: .zero, random: 0.5) == .fail)
        #expect(policy.decide(after: unavailable, attempt: 1, idempotent: true, elapsed: .seconds(10), random: 0.5) == .fail)
    }

    @Test("the rate limiter lets a burst through, then paces requests at qps")
    func rateLimiter() async throws {
        let limiter = RateLimiter(qps: 50, burst: 5)
        let start = ContinuousClock.now
        for _ in 0..<5 { try await limiter.acquire() }
        let burst = ContinuousClock.now - start
        for _ in 0..<15 { try await limiter.acquire() }
        let paced = ContinuousClock.now - start
        #expect(burst < .milliseconds(50))
        // 15 requests beyond the burst at 50/s need at least 0.3 s.
        #expect(paced >= .milliseconds(290))
    }

    @Test("discovery folds subresources into their resource")
    func discoveryParsing() throws {
        let list = try JSONValue(parsing: #"{"groupVersion":"v1","resources":[{"name":"pods","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/log","namespaced":true,"kind":"Pod","verbs":["get"]},{"name":"pods/exec","namespaced":true,"kind":"PodExecOptions","verbs":["get"]}]}"#)
        let resources = Discovery.parse(list, group: "", version: "v1", preferred: true)
        #expect(resources.count == 1)
        #expect(resources[0].subresources == ["log", "exec"])
        #expect(resources[0].singularName == "pod")
        #expect(resources[0].path(namespace: "a b", name: "x", subresource: "log") == "/api/v1/namespaces/a%20b/pods/x/log")
    }
}
