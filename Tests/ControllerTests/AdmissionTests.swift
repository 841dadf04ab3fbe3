import AsyncHTTPClient
import Foundation
import Kube
import Logging
import NIOCore
import NIOSSL
import Testing
@testable import Controller
@testable import Server

/// The admission webhook's decisions, from AdmissionReview requests as the API server sends them.
@Suite("Admission: who asked is recorded, and nobody but the controller claims a policy's runs")
struct AdmissionTests {
    let admission = ActionAdmission(controllerUser: "system:serviceaccount:cairn-system:cairn-controller")
    let alice: JSONValue = ["username": "alice", "uid": "1001", "groups": ["cairn:team-a", "system:authenticated"]]
    let controller: JSONValue = ["username": "system:serviceaccount:cairn-system:cairn-controller",
                                 "groups": ["system:serviceaccounts"]]

    func request(_ operation: String, user: JSONValue, object: JSONValue, old: JSONValue? = nil,
                 kind: String = "BackupAction") -> JSONValue {
        var request: JSONValue = ["uid": "r-1", "operation": .string(operation), "userInfo": user,
                                  "kind": ["group": "cairn.dev", "version": "v1alpha1", "kind": .string(kind)],
                                  "object": object]
        if let old { request["oldObject"] = old }
        return request
    }

    func action(name: String = "mine", labels: JSONValue? = nil, annotations: JSONValue? = nil,
                spec: JSONValue = ["profile": "p"]) -> JSONValue {
        var object: JSONValue = ["apiVersion": "cairn.dev/v1alpha1", "kind": "BackupAction",
                                 "metadata": ["name": .string(name), "namespace": "team-a"], "spec": spec]
        if let labels { object["metadata", "labels"] = labels }
        if let annotations { object["metadata", "annotations"] = annotations }
        return object
    }

    /// The object after the decision's patch.
    func patched(_ object: JSONValue, _ decision: ActionAdmission.Decision) throws -> KubeObject {
        guard case .allow(let patch) = decision else { throw AdmissionFailure(description: "denied: \(decision)") }
        return KubeObject(try JSONPatch.apply(patch, to: object))
    }

    struct AdmissionFailure: Error, CustomStringConvertible { var description: String }

    @Test("a create is stamped with the requester's identity, replacing whatever the object claimed")
    func stamp() throws {
        let forged: JSONValue = [ActionAdmission.requesterAnnotation: #"{"username":"cairn-admin","groups":["system:masters"]}"#,
                                 "note": "kept"]
        for object in [action(), action(annotations: forged)] {
            let result = try patched(object, admission.decide(request("CREATE", user: alice, object: object)))
            let requester = try #require(UserInfo.requester(of: result))
            #expect(requester.username == "alice")
            #expect(requester.groups == ["cairn:team-a", "system:authenticated"])
            #expect(requester.uid == "1001")
        }
        let kept = try patched(action(annotations: forged), admission.decide(request("CREATE", user: alice, object: action(annotations: forged))))
        #expect(kept.annotations["note"] == "kept")
        // The review answer carries the patch base64-encoded, as JSONPatch.
        let answer = admission.respond(to: ["request": request("CREATE", user: alice, object: action())])
        #expect(answer["response", "allowed"] == true)
        #expect(answer["response", "uid"] == "r-1")
        #expect(answer["response", "patchType"] == "JSONPatch")
        let patch = try JSONValue(parsing: Array(Data(base64Encoded: answer["response", "patch"]?.string ?? "") ?? Data()))
        #expect(patch.array?.count == 1)
    }

    @Test("policy labels and policy-run names are the controller's; others are refused with the reason")
    func policyClaims() throws {
        let labelled = action(labels: ["cairn.dev/policy": "nightly"])
        guard case .deny(let why) = admission.decide(request("CREATE", user: alice, object: labelled)) else {
            Issue.record("a user's action labelled as a policy's run was admitted")
            return
        }
        #expect(why.contains("cairn.dev/policy"))
        let slot = action(name: "nightly-20261201-020000")
        guard case .deny(let slotWhy) = admission.decide(request("CREATE", user: alice, object: slot)) else {
            Issue.record("a user took a policy's next slot")
            return
        }
        #expect(slotWhy.contains("scheduled runs"))
        // A RestoreAction may carry such a name; the controller may do both.
        #expect(try patched(slot, admission.decide(request("CREATE", user: alice, object: slot, kind: "RestoreAction"))).name == slot["metadata", "name"]?.string)
        let run = try patched(labelled, admission.decide(request("CREATE", user: controller, object: labelled)))
        #expect(UserInfo.requester(of: run)?.username == "system:serviceaccount:cairn-system:cairn-controller")
        #expect(ActionAdmission.isPolicyRunName("a-b-20261130-154940"))
        #expect(!ActionAdmission.isPolicyRunName("backup-2026-11-30"))
        #expect(!ActionAdmission.isPolicyRunName("x-2026113-154940"))
    }

    @Test("the stamp, the spec and the policy label never change after creation")
    func updates() throws {
        let stamped = try patched(action(), admission.decide(request("CREATE", user: alice, object: action()))).json
        var forged = stamped
        forged["metadata", "annotations", ActionAdmission.requesterAnnotation] = .string(#"{"username":"cairn-admin","groups":["system:masters"]}"#)
        var respecced = stamped
        respecced["spec", "profile"] = "other"
        var relabelled = stamped
        relabelled["metadata", "labels"] = ["cairn.dev/policy": "nightly"]
        var unstamped = stamped
        unstamped["metadata", "annotations"] = .emptyObject
        for (changed, what) in [(forged, "requester"), (respecced, "spec"), (relabelled, "cairn.dev/policy"), (unstamped, "requester")] {
            for user in [alice] {
                guard case .deny(let why) = admission.decide(request("UPDATE", user: user, object: changed, old: stamped)) else {
                    Issue.record("an update of the \(what) was admitted")
                    continue
                }
                #expect(why.contains(what == "requester" ? ActionAdmission.requesterAnnotation : what), "\(why)")
            }
        }
        var labels = stamped
        labels["metadata", "labels"] = ["team": "a"]
        #expect(admission.decide(request("UPDATE", user: alice, object: labels, old: stamped)) == .allow(patch: []))
        // Not ours, or no identity: never a silent pass of an unknown requester.
        var other = request("CREATE", user: alice, object: action())
        other["kind", "kind"] = "Profile"
        #expect(admission.decide(other) == .allow(patch: []))
        guard case .deny = admission.decide(request("CREATE", user: .emptyObject, object: action())) else {
            Issue.record("a request without userInfo was admitted")
            return
        }
    }

    @Test("a Blueprint's author is whoever last wrote its spec; the record cannot be forged or moved otherwise")
    func blueprintAuthor() throws {
        let bob: JSONValue = ["username": "bob", "uid": "1002", "groups": ["cairn:team-b"]]
        func blueprint(_ command: String, annotations: JSONValue? = nil) -> JSONValue {
            var object: JSONValue = ["apiVersion": "cairn.dev/v1alpha1", "kind": "Blueprint",
                                     "metadata": ["name": "pg", "namespace": "team-a"],
                                     "spec": ["actions": ["backup": ["phases": [["name": "dump", "exec": ["command": [.string(command)]]]]]]]]
            if let annotations { object["metadata", "annotations"] = annotations }
            return object
        }
        let forged: JSONValue = [ActionAdmission.requesterAnnotation: #"{"username":"cairn-admin","groups":["system:masters"]}"#]
        let created = try patched(blueprint("pg_dumpall", annotations: forged),
                                  admission.decide(request("CREATE", user: alice, object: blueprint("pg_dumpall", annotations: forged), kind: "Blueprint")))
        #expect(UserInfo.requester(of: created)?.username == "alice")
        // bob changes what runs: bob is now its author (his rights, not alice's, run it).
        let changed = blueprint("rm -rf /", annotations: .object(created.annotations.mapValues { .string($0) }))
        let rewritten = try patched(changed, admission.decide(request("UPDATE", user: bob, object: changed, old: created.json, kind: "Blueprint")))
        #expect(UserInfo.requester(of: rewritten)?.username == "bob")
        // A label change keeps the author; forging the record without changing the spec is refused.
        var labelled = created.json
        labelled["metadata", "labels"] = ["team": "a"]
        #expect(admission.decide(request("UPDATE", user: bob, object: labelled, old: created.json, kind: "Blueprint")) == .allow(patch: []))
        var moved = created.json
        moved["metadata", "annotations"] = forged
        guard case .deny(let why) = admission.decide(request("UPDATE", user: bob, object: moved, old: created.json, kind: "Blueprint")) else {
            Issue.record("a forged author was let through")
            return
        }
        #expect(why.contains("records who wrote this Blueprint"))
    }

    @Test("only the controller hands on a stamp it carries (an import Policy's author to its ImportActions, an ImportAction's creator to its restores); a Policy's author is whoever last wrote its spec")
    func handedOn() throws {
        let bob: JSONValue = ["username": "bob", "uid": "1002", "groups": ["cairn:team-b"]]
        let aliceStamp: JSONValue = [ActionAdmission.requesterAnnotation: .string(String(decoding: alice.serialized(), as: UTF8.self))]
        var restore = action(name: "standby-20261201-020000.shop", annotations: aliceStamp, spec: ["restorePoint": "x"])
        restore["metadata", "namespace"] = "cairn-system"
        let byController = try patched(restore, admission.decide(request("CREATE", user: controller, object: restore, kind: "RestoreAction")))
        #expect(UserInfo.requester(of: byController)?.username == "alice")
        // bob carrying alice's stamp gets his own.
        let byBob = try patched(restore, admission.decide(request("CREATE", user: bob, object: restore, kind: "RestoreAction")))
        #expect(UserInfo.requester(of: byBob)?.username == "bob")
        // The controller's own ImportActions without a stamp are stamped as the controller.
        let plain = action(name: "standby-20261201-020000", labels: ["cairn.dev/policy": "standby"], spec: ["profile": "p"])
        let own = try patched(plain, admission.decide(request("CREATE", user: controller, object: plain, kind: "ImportAction")))
        #expect(UserInfo.requester(of: own)?.username == "system:serviceaccount:cairn-system:cairn-controller")
        // A user cannot take an import Policy's slot.
        let slot = action(name: "standby-20261201-020000", spec: ["profile": "p"])
        guard case .deny = admission.decide(request("CREATE", user: alice, object: slot, kind: "ImportAction")) else {
            Issue.record("a user took an import Policy's slot")
            return
        }
        // Policies: alice writes it, bob rewrites its spec — bob's rights restore from then on.
        let policy: JSONValue = ["apiVersion": "cairn.dev/v1alpha1", "kind": "Policy",
                                 "metadata": ["name": "standby", "namespace": "cairn-system"],
                                 "spec": ["schedule": "@hourly", "import": ["profile": "p", "restore": .emptyObject]]]
        let written = try patched(policy, admission.decide(request("CREATE", user: alice, object: policy, kind: "Policy")))
        #expect(UserInfo.requester(of: written)?.username == "alice")
        var changed = written.json
        changed["spec", "schedule"] = "@daily"
        let rewritten = try patched(changed, admission.decide(request("UPDATE", user: bob, object: changed, old: written.json, kind: "Policy")))
        #expect(UserInfo.requester(of: rewritten)?.username == "bob")
    }

    @Test("the webhook's certificate: a CA of its own, the serving certificate valid for 127.0.0.1 and the Service names, served over TLS")
    func certificate() async throws {
        let tls = try WebhookTLS.generate(hosts: WebhookTLS.hosts(namespace: "cairn-system", service: "cairn-webhook"))
        #expect(tls.isFresh())
        #expect(!(try WebhookTLS.generate(hosts: ["127.0.0.1"], now: Date().addingTimeInterval(-2 * 365 * 86400 + 86400)).isFresh()))
        #expect(tls.caPEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(!tls.keyPEM.isEmpty && !tls.caPEM.contains("PRIVATE KEY"))
        let endpoint = HTTPEndpoint(name: "test", maxBody: 1 << 20, tls: try tls.serverContext(), logger: Logger(label: "test")) { request in
            .text(.ok, "\(request.method) \(request.path) \(request.body.count)\n")
        }
        let port = Int.random(in: 20000..<40000)
        let server = Task { try await endpoint.run(host: "127.0.0.1", port: port) }
        defer { server.cancel() }
        var answer = ""
        try await withClient(trusting: tls.caPEM) { client in
            for _ in 0..<50 {
                var request = HTTPClientRequest(url: "https://127.0.0.1:\(port)/admission")
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: "{}"))
                if let response = try? await client.execute(request, timeout: .seconds(5)) {
                    answer = String(buffer: try await response.body.collect(upTo: 1 << 16))
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(answer == "POST /admission 2\n")
        // A client that trusts another CA is refused.
        let stranger = try WebhookTLS.generate(hosts: ["127.0.0.1"])
        try await withClient(trusting: stranger.caPEM) { other in
            await #expect(throws: (any Error).self) {
                _ = try await other.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)/admission"), timeout: .seconds(5))
            }
        }
    }

    /// An HTTP client that trusts only `caPEM`, shut down after `body`.
    func withClient(trusting caPEM: String, _ body: (HTTPClient) async throws -> Void) async throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: configuration))
        do {
            try await body(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }
}

@Suite("Controller metrics")
struct ControllerMetricsTests {
    @Test("the last successful backup is the newest restore point's time: an older one reconciled later never moves it back")
    func newestBackupWins() {
        let metrics = ControllerMetrics()
        metrics.lastSuccessfulBackup(namespace: "shop", policy: "nightly", time: Date(timeIntervalSince1970: 2000))
        metrics.lastSuccessfulBackup(namespace: "shop", policy: "nightly", time: Date(timeIntervalSince1970: 1000))
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains(#"cairn_last_successful_backup_timestamp_seconds{namespace="shop",policy="nightly"} 2000"#), "\(text)")
    }
}

@Suite("Liveness")
struct LivenessTests {
    @Test("/healthz fails when a worker is stuck in one pass or a watch hears nothing, and recovers")
    func stuckParts() {
        let probes = ProbeState()
        let start = ContinuousClock.now
        #expect(probes.liveness(now: start).alive)
        probes.beat("worker 0", limit: .seconds(300), now: start)
        probes.beat("watch of profiles", limit: .seconds(900), now: start)
        #expect(probes.liveness(now: start + .seconds(299)).alive)
        let stuck = probes.liveness(now: start + .seconds(301))
        #expect(!stuck.alive && stuck.reason == "stuck: worker 0 for 301 s", "\(stuck)")
        probes.rest("worker 0")
        #expect(probes.liveness(now: start + .seconds(600)).alive)
        #expect(probes.liveness(now: start + .seconds(901)).reason.contains("watch of profiles"))
        probes.beat("watch of profiles", limit: .seconds(900), now: start + .seconds(901))
        #expect(probes.liveness(now: start + .seconds(902)).alive)
    }
}

extension ControllerMetricsTests {
    @Test("an application's series disappear with its namespace")
    func forgetNamespace() {
        let metrics = ControllerMetrics()
        metrics.lastSuccessfulBackup(namespace: "shop", policy: "", time: Date(timeIntervalSince1970: 5))
        metrics.lastSuccessfulBackup(namespace: "shop-2", policy: "", time: Date(timeIntervalSince1970: 5))
        metrics.restorePoints(namespace: "shop", count: 3)
        metrics.forget(namespace: "shop")
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(!text.contains(#"namespace="shop""#), "\(text)")
        #expect(text.contains(#"namespace="shop-2""#))
        // A later backup of a new namespace of that name starts afresh.
        metrics.lastSuccessfulBackup(namespace: "shop", policy: "", time: Date(timeIntervalSince1970: 1))
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"cairn_last_successful_backup_timestamp_seconds{namespace="shop",policy=""} 1"#))
    }
}
