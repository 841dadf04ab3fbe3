import ArgumentParser
import Foundation
import Kube

/// The Cairn side of `bench/kube/run`: the same work kubectl is timed doing, through Cairn's client.
@main
struct KubeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-bench", abstract: "Benchmark Cairn's Kubernetes client (used by bench/kube/run).",
        subcommands: [List.self, Create.self])

    struct Common: ParsableArguments {
        @Option var kubeconfig: String?
        @Option var context: String?
        @Option(help: "Client-side rate limit in requests per second (0: none).") var qps: Double = 400
        @Option var burst: Int = 800

        func withClient<T: Sendable>(_ body: (KubeClient) async throws -> T) async throws -> T {
            let connection = try ClusterConnection.resolve(kubeconfig: kubeconfig, context: context)
            var options = KubeClient.Options()
            options.qps = qps > 0 ? qps : nil
            options.burst = burst
            return try await KubeClient.with(connection, options: options, body)
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var common: Common
        @Option(name: .shortAndLong) var namespace: String
        @Option var pageSize = 500
        @Option(help: "Resource type, e.g. configmaps.") var resource = "configmaps"
        @Flag(help: "Write the objects as one JSON list to stdout, like kubectl -o json.") var print = false
        @Option(help: "Only objects with these labels, e.g. bench=apps.") var selector: String?

        func run() async throws {
            let count = try await common.withClient { client in
                let r = try await client.resource(named: resource)
                var count = 0
                var out: [UInt8] = []
                if print { out.append(contentsOf: #"{"apiVersion":"v1","kind":"List","items":["#.utf8) }
                for try await page in client.pages(r, namespace: namespace, options: ListOptions(labelSelector: selector),
                                                   pageSize: pageSize) {
                    count += page.items.count
                    if print {
                        for item in page.items {
                            if out.last != UInt8(ascii: "[") { out.append(UInt8(ascii: ",")) }
                            out.append(contentsOf: item.json.serialized())
                        }
                        FileHandle.standardOutput.write(Data(out))
                        out.removeAll(keepingCapacity: true)
                    }
                }
                if print { FileHandle.standardOutput.write(Data("]}\n".utf8)) }
                return count
            }
            FileHandle.standardError.write(Data("listed \(count)\n".utf8))
        }
    }

    struct Create: AsyncParsableCommand {
        @OptionGroup var common: Common
        @Option(help: "A YAML or JSON file of objects (documents or a List).") var file: String
        @Option(help: "Requests in flight.") var concurrency = 32

        func run() async throws {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            var objects: [KubeObject] = []
            for document in try JSONValue.parseYAMLDocuments(text) {
                if let items = document["items"]?.array { objects += items.map(KubeObject.init) } else {
                    objects.append(KubeObject(document))
                }
            }
            let start = ContinuousClock.now
            let created = try await common.withClient { client in
                // Resolve each kind once, then create in parallel with bounded width.
                var resources: [String: APIResource] = [:]
                for object in objects where resources[object.apiVersion + "/" + object.kind] == nil {
                    resources[object.apiVersion + "/" + object.kind] = try await client.resource(for: object)
                }
                let byKind = resources
                return try await withThrowingTaskGroup(of: Void.self) { group in
                    var created = 0
                    for (i, object) in objects.enumerated() {
                        if i >= concurrency {
                            try await group.next()
                            created += 1
                        }
                        group.addTask {
                            _ = try await client.create(object, as: byKind[object.apiVersion + "/" + object.kind]!)
                        }
                    }
                    while try await group.next() != nil { created += 1 }
                    return created
                }
            }
            // The time of the creates alone, after the file was read: "created N in S s".
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            FileHandle.standardError.write(Data("created \(created) in \(String(format: "%.2f", seconds)) s\n".utf8))
        }
    }
}
