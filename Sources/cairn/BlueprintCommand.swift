import ArgumentParser
import Foundation
import Kube
import Protection

struct BlueprintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blueprint",
        abstract: "Check, list and show blueprints: how a data service is backed up and restored consistently.",
        subcommands: [BlueprintCheckCommand.self, BlueprintListCommand.self, BlueprintShowCommand.self])
}

/// Cairn's namespace, where administrators keep cluster-wide blueprints.
let cairnSystemNamespace = "cairn-system"

/// A blueprint or hooks file, read with the line of every field: a mistake is reported as
/// `FILE:LINE: field: message`.
struct CheckedFile {
    var path: String
    var document: JSONValue
    var lines: YAMLLines

    init(_ path: String) throws {
        self.path = path
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CLIError.usage("\(path): cannot be read: \(error.localizedDescription)")
        }
        do {
            (document, lines) = try JSONValue.parseYAMLWithLines(text)
        } catch {
            throw CLIError.usage("\(path): \(error.description)")
        }
    }

    /// The error of a checker, with where it is in the file.
    func located(_ error: ProtectionError) -> CLIError {
        let line = error.field.flatMap { lines.line(of: $0) }.map { ":\($0)" } ?? ""
        return CLIError.usage("\(path)\(line): \(error.description)")
    }

    func blueprint() throws -> Blueprint {
        do {
            return try Blueprint(json: document, name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
        } catch {
            throw located(error)
        }
    }

    /// A hooks file: `{beforeCapture: [...], afterCapture: [...]}` or `{afterRestore: [...]}`.
    func hooks(allowed: [String]) throws -> [String: [Blueprint.Phase]] {
        do {
            return try Blueprint.hooks(document, field: "", allowed: allowed)
        } catch {
            throw located(error)
        }
    }
}

struct BlueprintCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check blueprint files (YAML or JSON) without a cluster: every mistake with its line.",
        discussion: "Exit 0 when every file is a valid blueprint, 64 when one is not (each mistake printed as FILE:LINE: field: message).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Blueprint files.")
    var files: [String]

    func run() async throws {
        try await runReporting {
            var failed = 0
            for path in files {
                do {
                    let blueprint = try CheckedFile(path).blueprint()
                    let actions = Blueprint.ActionName.allCases.compactMap { name in
                        blueprint.actions[name].map { "\(name.rawValue) (\($0.phases.count + $0.deferred.count) phases)" }
                    }
                    if !global.quiet { print("\(path): blueprint \(blueprint.name) is valid: \(actions.joined(separator: ", "))") }
                } catch let error as CLIError {
                    printError(error.description)
                    failed += 1
                }
            }
            return failed == 0 ? 0 : Exit.usage
        }
    }
}

struct BlueprintListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the blueprints a namespace's workloads may name: its own and the cluster-wide ones.")

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "The application's namespace (default: the context's).")
    var namespace: String?

    func run() async throws {
        try await runReporting {
            let rows = try await cluster.withClient { client -> [[String]] in
                let ns = namespace ?? client.connection.namespace
                var rows: [[String]] = []
                for (scope, where_) in [("cluster-wide", cairnSystemNamespace), ("namespace", ns)] {
                    for object in try await BlueprintCatalog.list(in: where_, reader: client) {
                        let state: String
                        do {
                            state = try Blueprint(json: object.json).actionNames.joined(separator: ",")
                        } catch {
                            state = "invalid: \(error)"
                        }
                        rows.append([object.name, scope == "namespace" ? ns : "\(scope) (\(where_))", state])
                    }
                }
                return rows
            }
            if global.json {
                try printJSON(rows.map { ["name": $0[0], "scope": $0[1], "actions": $0[2]] })
            } else {
                printTable(["NAME", "FROM", "ACTIONS"], rows)
            }
            return 0
        }
    }
}

struct BlueprintShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a blueprint's actions and phases, from the cluster (a namespace's, else cluster-wide) or a file.")

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "The application's namespace (default: the context's).")
    var namespace: String?
    @Argument(help: "A blueprint's name, or a file.")
    var name: String

    func run() async throws {
        try await runReporting {
            let blueprint: Blueprint
            if FileManager.default.fileExists(atPath: name) {
                blueprint = try CheckedFile(name).blueprint()
            } else {
                blueprint = try await cluster.withClient { client in
                    let catalog = try await BlueprintCatalog.load(namespace: namespace ?? client.connection.namespace, reader: client,
                                                                  systemNamespace: cairnSystemNamespace, systemReader: client)
                    if let found = catalog.valid[name] { return found }
                    if let problem = catalog.invalid[name] { throw CLIError(problem) }
                    throw CLIError.usage("no blueprint \(name) in the namespace or cluster-wide (list them with `cairn blueprint list`)")
                }
            }
            if global.json {
                print(String(decoding: blueprint.source.serialized(), as: UTF8.self))
                return 0
            }
            print("blueprint \(blueprint.name)\(blueprint.description.map { ": \($0)" } ?? "")")
            print("volumes: \(blueprint.volumes.rawValue)")
            for action in Blueprint.ActionName.allCases {
                guard let body = blueprint.actions[action] else { continue }
                print("\(action.rawValue):")
                for phase in body.phases { print("  \(phase.name): \(phase.step.summary)\(phase.artifact ? " → artifact" : "")\(phase.input.map { " ← artifact \($0)" } ?? "")") }
                for phase in body.deferred { print("  (deferred) \(phase.name): \(phase.step.summary)") }
            }
            return 0
        }
    }
}
