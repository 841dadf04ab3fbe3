import Foundation
import Kube
import KubeTesting
import Testing

@Suite("Watch, logs and exec against the local cluster", .serialized)
struct WatchAndExecTests {
    /// Reads events until `done` says so (or the deadline passes). The deadline is generous: it is about loss and
    /// order, not speed, and a full test run keeps this 2-core machine's cores busy (a reconnect after a cut took
    /// longer than 30 s there once).
    static func collect(_ iterator: inout WatchSequence.AsyncIterator, timeout: Duration = .seconds(120),
                        until done: ([WatchEvent]) -> Bool) async throws -> [WatchEvent] {
        var events: [WatchEvent] = []
        let deadline = ContinuousClock.now + timeout
        while !done(events) {
            guard ContinuousClock.now < deadline else {
                throw ClusterError("watch: timed out after \(events.count) events (\(describe(events))); \(iterator.connections) connections, \(iterator.lists) lists")
            }
            guard let event = try await iterator.next() else { break }
            events.append(event)
        }
        return events
    }

    /// The events as a test failure shows them: type, name and resourceVersion.
    static func describe(_ events: [WatchEvent]) -> String {
        events.map { event in
            switch event {
            case .added(let o): return "ADDED \(o.name)@\(o.resourceVersion ?? "")"
            case .modified(let o): return "MODIFIED \(o.name)@\(o.resourceVersion ?? "")"
            case .deleted(let o): return "DELETED \(o.name)@\(o.resourceVersion ?? "")"
            case .bookmark(let rv): return "BOOKMARK @\(rv)"
            case .synced(let objects, let rv): return "SYNCED \(objects.count) objects @\(rv)"
            }
        }.joined(separator: ", ")
    }

    static func names(_ events: [WatchEvent], _ type: String) -> [String] {
        events.compactMap { event in
            switch (event, type) {
            case (.added(let o), "added"), (.modified(let o), "modified"), (.deleted(let o), "deleted"): return o.name
            default: return nil
            }
        }
    }

    @Test("a watch lists first, then delivers every change in order, and survives dropped connections without loss or repeats")
    func watchSurvivesDrops() async throws {
        let base = try TestCluster.connection()
        let proxy = try TCPProxy(targetHost: base.host, targetPort: base.port)
        defer { proxy.stop() }
        var viaProxy = base
        viaProxy.host = "127.0.0.1"
        viaProxy.port = proxy.port
        try await TestCluster.withNamespace("w") { admin, ns in
            _ = try await admin.create(TestCluster.configMap("before", ns))
            try await KubeClient.with(viaProxy) { client in
                var watch = client.watch(ConfigMap.resource, namespace: ns,
                                         options: ListOptions(labelSelector: "!skip")).makeAsyncIterator()
                guard case .synced(let initial, _)? = try await watch.next() else {
                    Issue.record("the first event is not the initial list")
                    return
                }
                #expect(initial.map(\.name).contains("before"))
                _ = try await admin.create(TestCluster.configMap("a", ns))
                _ = try await admin.create(TestCluster.configMap("hidden", ns, labels: ["skip": "1"]))
                var events = try await Self.collect(&watch) { Self.names($0, "added").contains("a") }
                #expect(Self.names(events, "added") == ["a"])

                // Cut the connection; change things while the watch is disconnected.
                for round in 0..<3 {
                    proxy.dropAll()
                    _ = try await admin.modify(ConfigMap.self, "a", namespace: ns) { $0.data["round"] = "\(round)" }
                    _ = try await admin.create(TestCluster.configMap("r\(round)", ns))
                    events = try await Self.collect(&watch) { Self.names($0, "added").contains("r\(round)") }
                    #expect(Self.names(events, "modified") == ["a"], "round \(round)")
                    #expect(Self.names(events, "added") == ["r\(round)"], "round \(round)")
                }
                try await admin.delete(ConfigMap.self, "a", namespace: ns)
                events = try await Self.collect(&watch) { !Self.names($0, "deleted").isEmpty }
                #expect(Self.names(events, "deleted") == ["a"])
                #expect(watch.connections >= 4)
                #expect(watch.lists == 1)
            }
        }
    }

    @Test("a watch from a resourceVersion the server no longer has (410 Gone) lists again and carries on")
    func watchRelistsOnGone() async throws {
        try await TestCluster.withNamespace("w") { client, ns in
            _ = try await client.create(TestCluster.configMap("x", ns))
            // The premise: the server no longer has resourceVersion 1 (its watch cache begins where the API
            // server last listed etcd). Asked first with kubectl, so that a failure below is the client's.
            let cluster = try LocalCluster.shared()
            let answer = try await cluster.kubectlOK(["get", "--raw", "/api/v1/namespaces/\(ns)/configmaps?watch=1&resourceVersion=1&timeoutSeconds=2"])
            #expect(answer.contains("\"code\":410"), "the server should answer a watch from resourceVersion 1 with 410: \(answer.prefix(400))")
            var watch = client.watch(ConfigMap.resource, namespace: ns,
                                     options: ListOptions(resourceVersion: "1")).makeAsyncIterator()
            var events = try await Self.collect(&watch) { events in
                events.contains { if case .synced = $0 { return true } else { return false } }
            }
            guard case .synced(let objects, let rv)? = events.last else {
                Issue.record("no re-list after 410")
                return
            }
            #expect(objects.map(\.name).contains("x"))
            #expect(!rv.isEmpty)
            #expect(watch.lists == 1)
            _ = try await client.create(TestCluster.configMap("y", ns))
            events = try await Self.collect(&watch) { Self.names($0, "added").contains("y") }
            #expect(Self.names(events, "added") == ["y"])
        }
    }

    @Test("a watch the user may not make fails with Forbidden instead of retrying forever")
    func watchForbidden() async throws {
        try await TestCluster.withClient("cairn-alice") { alice in
            var watch = alice.watch(ConfigMap.resource, namespace: "team-b").makeAsyncIterator()
            let error = await TestCluster.kubeError { _ = try await watch.next() }
            #expect(error?.code == .forbidden)
        }
    }

    static func runPod(_ client: KubeClient, _ ns: String, name: String, command: String) async throws {
        var pod = Pod(name: name, namespace: ns)
        pod.object["spec"] = [
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": "Never",
            "containers": [
                ["name": "main", "image": "cairn.local/busybox:1.35", "imagePullPolicy": "Never",
                 "command": ["sh", "-c", .string(command)]],
                ["name": "side", "image": "cairn.local/busybox:1.35", "imagePullPolicy": "Never",
                 "command": ["sleep", "3600"]],
            ],
        ]
        _ = try await client.create(pod)
    }

    @Test("exec returns stdout, stderr and the exit status; stdin reaches the command; errors say why")
    func exec() async throws {
        try await TestCluster.withNamespace("x") { client, ns in
            try await Self.runPod(client, ns, name: "shell", command: "sleep 3600")
            try await TestCluster.waitUntil("the pod to run", timeout: .seconds(120)) {
                try await client.get(Pod.self, "shell", namespace: ns).isReady
            }
            let result = try await client.exec(pod: "shell", namespace: ns, container: "main",
                                               command: ["sh", "-c", "echo out; echo err >&2; exit 3"])
            #expect(result.stdoutText == "out\n")
            #expect(result.stderrText == "err\n")
            #expect(result.exitCode == 3)
            let ok = try await client.exec(pod: "shell", namespace: ns, container: "side", command: ["true"])
            #expect(ok.exitCode == 0 && ok.stdout.isEmpty)
            // Short commands: output, status and close can arrive in the same read as the 101 answer
            // (regression: they were dropped with the HTTP decoder). A relay that coalesces makes it certain.
            let base = try TestCluster.connection()
            let proxy = try TCPProxy(targetHost: base.host, targetPort: base.port)
            defer { proxy.stop() }
            proxy.coalesceResponses = true
            var viaProxy = base
            viaProxy.host = "127.0.0.1"
            viaProxy.port = proxy.port
            try await KubeClient.with(viaProxy) { coalesced in
                let quick = try await coalesced.exec(pod: "shell", namespace: ns, container: "main",
                                                     command: ["sh", "-c", "echo quick; exit 4"])
                #expect(quick.stdoutText == "quick\n" && quick.exitCode == 4)
            }
            // And many at once.
            try await withThrowingTaskGroup(of: ExecResult.self) { group in
                for i in 0..<24 {
                    if i >= 8 { #expect(try await group.next()?.exitCode == 5) }
                    group.addTask {
                        try await client.exec(pod: "shell", namespace: ns, container: "main", command: ["sh", "-c", "echo \(i); exit 5"])
                    }
                }
                for try await result in group { #expect(result.exitCode == 5) }
            }

            // stdin: v4 cannot signal end of input, so the command reads a known length.
            let input = Array("hello, cairn".utf8)
            let upper = try await client.exec(pod: "shell", namespace: ns, container: "main",
                                              command: ["sh", "-c", "head -c \(input.count) | tr a-z A-Z"], stdin: input)
            #expect(upper.stdoutText == "HELLO, CAIRN")

            // Large output arrives whole (many frames).
            let big = try await client.exec(pod: "shell", namespace: ns, container: "main",
                                            command: ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"])
            #expect(big.stdout.count == 3_000_000 && big.stdout.allSatisfy { $0 == UInt8(ascii: "x") })

            let missing = await TestCluster.kubeError {
                _ = try await client.exec(pod: "shell", namespace: ns, container: "main", command: ["/no/such/binary"])
            }
            #expect(missing?.code == .execFailed)
            #expect(missing?.description.contains("no such file") == true || missing?.description.contains("not found") == true)
            let noPod = await TestCluster.kubeError {
                _ = try await client.exec(pod: "absent", namespace: ns, command: ["true"])
            }
            #expect(noPod?.code == .notFound)
            let timeout = await TestCluster.kubeError {
                _ = try await client.exec(pod: "shell", namespace: ns, container: "main", command: ["sleep", "30"],
                                          timeout: .seconds(1))
            }
            #expect(timeout?.code == .timeout)
        }
        try await TestCluster.withClient("cairn-alice") { alice in
            let forbidden = await TestCluster.kubeError {
                _ = try await alice.exec(pod: "anything", namespace: "team-b", command: ["true"])
            }
            #expect(forbidden?.code == .forbidden)
        }
    }

    @Test("logs: the whole log, and a followed log that delivers lines as they are written")
    func logs() async throws {
        try await TestCluster.withNamespace("l") { client, ns in
            try await Self.runPod(client, ns, name: "talker",
                                  command: "for i in $(seq 1 20); do echo line $i; sleep 0.1; done")
            try await TestCluster.waitUntil("the pod to start", timeout: .seconds(120)) {
                let phase = try await client.get(Pod.self, "talker", namespace: ns).phase
                return phase == "Running" || phase == "Succeeded"
            }
            var lines: [String] = []
            for try await line in client.logLines(pod: "talker", namespace: ns,
                                                  options: LogOptions(container: "main", follow: true)) {
                lines.append(line)
                if lines.count == 20 { break }
            }
            #expect(lines == (1...20).map { "line \($0)" })
            let tail = try await client.log(pod: "talker", namespace: ns, options: LogOptions(container: "main", tailLines: 2))
            #expect(tail == "line 19\nline 20\n")
        }
    }
}
