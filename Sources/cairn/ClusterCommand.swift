import ArgumentParser
import Controller
import Foundation
import Kube

/// Where the CLI finds its cluster: --kubeconfig/--context, else KUBECONFIG, the pod's service account,
/// ~/.kube/config (see `ClusterConnection.resolve`).
struct ClusterOptions: ParsableArguments {
    @Option(name: .long, help: "Kubeconfig file. Default: $KUBECONFIG, the pod's service account, ~/.kube/config.")
    var kubeconfig: String?

    @Option(name: .long, help: "Kubeconfig context. Default: the current context.")
    var context: String?

    @Option(name: .long, help: "Requests per second Cairn sends the API server at most (burst: twice as many; 0: no limit). The server's own priority and fairness protects it; this is a courtesy.")
    var kubeQps: Double = 1000

    func connection() throws -> ClusterConnection {
        try ClusterConnection.resolve(kubeconfig: kubeconfig, context: context)
    }

    /// Runs `body` with a client of the chosen cluster.
    /// Runs `body` with a client of the chosen cluster. A person is waiting: retries give up after 15 s.
    func withClient<T: Sendable>(_ body: (KubeClient) async throws -> T) async throws -> T {
        var options = KubeClient.Options()
        options.retry = RetryPolicy(maxAttempts: 3, budget: .seconds(15))
        options.qps = kubeQps > 0 ? kubeQps : nil
        options.burst = max(1, Int(kubeQps * 2))
        return try await KubeClient.with(try connection(), options: options, body)
    }
}

/// The kinds Cairn's CRDs define (group `cairn.dev`).
enum CairnKinds {
    static let group = CairnKind.group
    static let all = CairnKind.allCases.map(\.rawValue)
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Inspect the Kubernetes cluster Cairn talks to.",
        subcommands: [ClusterInfoCommand.self])
}

struct ClusterInfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Server version, user, API groups and resources, and whether Cairn's CRDs are installed.")

    @OptionGroup var cluster: ClusterOptions

    @Flag(name: .long, help: "Print machine-readable JSON on stdout.")
    var json = false

    struct Info: Encodable {
        var server: String
        var version: String
        var platform: String
        var context: String?
        var user: String?
        var namespace: String
        var groups: Int
        var resources: Int
        var unavailableGroupVersions: [String: String]
        var cairnKindsInstalled: [String]
        var cairnKindsMissing: [String]
        var cairnInstalled: Bool
    }

    func run() async throws {
        try await runReporting {
            let info = try await cluster.withClient { client -> Info in
                async let version = client.serverVersion()
                let resources = try await client.discovery.all(using: client, refresh: true)
                let failures = await client.discovery.failures
                let groups = Set(resources.map(\.group))
                let installed = Set(resources.filter { $0.group == CairnKinds.group }.map(\.kind))
                let v = try await version
                return Info(
                    server: client.connection.server, version: v.gitVersion, platform: v.platform,
                    context: client.connection.contextName, user: client.connection.userName,
                    namespace: client.connection.namespace, groups: groups.count,
                    resources: Set(resources.map(\.qualifiedName)).count, unavailableGroupVersions: failures,
                    cairnKindsInstalled: CairnKinds.all.filter(installed.contains),
                    cairnKindsMissing: CairnKinds.all.filter { !installed.contains($0) },
                    cairnInstalled: CairnKinds.all.allSatisfy(installed.contains))
            }
            if json {
                try printJSON(info)
                return 0
            }
            let crds: String
            if info.cairnInstalled {
                crds = "installed (\(info.cairnKindsInstalled.joined(separator: ", ")))"
            } else if info.cairnKindsInstalled.isEmpty {
                crds = "not installed (kubectl apply -f deploy/)"
            } else {
                crds = "incomplete: missing \(info.cairnKindsMissing.joined(separator: ", ")) (kubectl apply -f deploy/)"
            }
            var rows = [
                ("Server", "\(info.server) (\(info.version), \(info.platform))"),
                ("Context", info.context ?? "in-cluster service account"),
                ("User", info.user ?? "unknown"),
                ("Namespace", info.namespace),
                ("API", "\(info.groups) groups, \(info.resources) resource types"),
                ("Cairn CRDs", crds),
            ]
            if !info.unavailableGroupVersions.isEmpty {
                rows.append(("Unavailable", info.unavailableGroupVersions.keys.sorted().joined(separator: ", ")))
            }
            for (key, value) in rows { print((key + ":").padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
            return 0
        }
    }
}
