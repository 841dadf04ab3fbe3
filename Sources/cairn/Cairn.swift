import ArgumentParser
import Foundation
import Kube
import Logging
import Protection
import Repository
import S3Storage
import Snapshot
import Storage

@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Protect stateful applications: deduplicated, compressed, encrypted backups.",
        discussion: """
            The repository comes from --repo or CAIRN_REPOSITORY; the password from CAIRN_PASSWORD, \
            --password-file or a prompt. Exit codes: 0 success, 1 failure, 3 partial (the run finished \
            but some files were skipped; see the messages), 10 not a repository, 11 wrong password, \
            12 repository locked, 13 check found damage, 64 usage error.
            """,
        version: CairnVersion.current,
        subcommands: [RepoCommand.self, BlueprintCommand.self, BackupCommand.self, SnapshotsCommand.self, LsCommand.self,
                      RestoreCommand.self, ForgetCommand.self, PruneCommand.self, ClusterCommand.self,
                      AppCommand.self, RestorePointsCommand.self, ControllerCommand.self, MoverCommand.self]
    )

    static func main() async {
        BlockingIO.limitMallocArenas()
        // Logs go to stderr (stdout carries --json output); warnings and above unless CAIRN_LOG_LEVEL says
        // otherwise (trace, debug, info, notice, warning, error, critical).
        // The controller logs JSON lines at info by default (CAIRN_LOG_FORMAT=text|json overrides).
        let env = ProcessInfo.processInfo.environment
        let isController = CommandLine.arguments.dropFirst().first == "controller"
        let level = env["CAIRN_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? (isController ? .info : .warning)
        let json = (env["CAIRN_LOG_FORMAT"] ?? (isController ? "json" : "text")) == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Exit codes, documented in README and `cairn --help`.
enum Exit {
    static let failure: Int32 = 1
    static let partial: Int32 = 3
    static let notARepository: Int32 = 10
    static let wrongPassword: Int32 = 11
    static let locked: Int32 = 12
    static let damaged: Int32 = 13
    static let usage: Int32 = 64
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Repository location: a directory, or s3://BUCKET/PREFIX. Default: $CAIRN_REPOSITORY.")
    var repo: String?

    @Option(name: .long, help: "S3-compatible endpoint URL (MinIO, Ceph, …). Default: $CAIRN_S3_ENDPOINT, else AWS.")
    var s3Endpoint: String?

    @Option(name: .long, help: "S3 region. Default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1.")
    var s3Region: String?

    @Flag(name: .long, inversion: .prefixedNo,
          help: "Path-style S3 addressing (default for custom endpoints; virtual-hosted for AWS).")
    var s3PathStyle: Bool?

    @Option(name: .long, help: "PEM file of the CA that signed the S3 endpoint's certificate.")
    var s3CaFile: String?

    @Option(name: .long, help: "Read the password from this file (first line).")
    var passwordFile: String?

    @Flag(name: .long, help: "Print machine-readable JSON on stdout.")
    var json = false

    @Flag(name: [.short, .long], help: "Print only errors.")
    var quiet = false

    func repositoryPath() throws -> String {
        guard let location = repo ?? ProcessInfo.processInfo.environment["CAIRN_REPOSITORY"], !location.isEmpty else {
            throw CLIError.usage("no repository given: use --repo PATH or set CAIRN_REPOSITORY")
        }
        return location
    }

    /// The repository's store: a directory, or an S3 bucket (credentials from AWS_ACCESS_KEY_ID/
    /// AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN or AWS_PROFILE). `protectionDays` only when creating one.
    func store(protectionDays: Int? = nil) async throws -> any BlobStore {
        let location = try repositoryPath()
        guard location.hasPrefix("s3:") else {
            if protectionDays != nil {
                throw CLIError.usage("--protection-days needs an S3 location with object lock")
            }
            return FileBlobStore(root: URL(fileURLWithPath: location))
        }
        let env = ProcessInfo.processInfo.environment
        let s3 = try S3Location(url: location, endpoint: s3Endpoint ?? env["CAIRN_S3_ENDPOINT"], region: s3Region,
                                pathStyle: s3PathStyle, caFile: s3CaFile,
                                protectionPeriod: protectionDays.map { TimeInterval($0) * 86_400 })
        return try await S3BlobStore.open(s3, credentials: try S3Credentials.fromEnvironment())
    }

    func password(prompt: String = "Repository password: ") throws -> String {
        if let text = ProcessInfo.processInfo.environment["CAIRN_PASSWORD"] { return text }
        if let file = passwordFile { return try readPasswordFile(file) }
        return try promptPassword(prompt)
    }

    /// The repository; `readAhead`: the files the command reads next (by default the index and the snapshots:
    /// a local repository has them read from disk while the key is derived).
    func open(readAhead: [BlobKind] = [.index, .snapshots]) async throws -> Repository {
        try await Repository.open(store: try await store(), password: try password(), readAhead: readAhead)
    }

    var showProgress: Bool { !json && !quiet && isatty(STDERR_FILENO) == 1 }
}

func readPasswordFile(_ path: String) throws -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw CLIError.usage("cannot read the password file \(path)")
    }
    return String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
}

func promptPassword(_ prompt: String) throws -> String {
    guard isatty(STDIN_FILENO) == 1, let raw = getpass(prompt) else {
        throw CLIError.usage("no password: set CAIRN_PASSWORD, use --password-file, or run on a terminal")
    }
    return String(cString: raw)
}

/// An error the CLI reports itself, with its exit code.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var code: Int32

    init(_ message: String, code: Int32 = Exit.failure) {
        self.description = message
        self.code = code
    }

    /// The command line asks for something that cannot be: exit 64.
    static func usage(_ message: String) -> CLIError { CLIError(message, code: Exit.usage) }
}

extension Exit {
    /// The one mapping of errors to exit codes and to what the message adds for a user at a terminal (the
    /// options that change the outcome; library messages name settings, not flags).
    static func report(_ error: any Error) -> (code: Int32, hint: String?) {
        switch error {
        case let error as CLIError:
            return (error.code, nil)
        case let error as RepositoryError:
            switch error.code {
            case .notARepository: return (notARepository, "create one with `cairn repo init`, or check --repo")
            case .newerFormat: return (notARepository, nil)
            case .wrongPassword: return (wrongPassword, nil)
            case .locked: return (locked, nil)
            case .corrupt: return (failure, "`cairn repo check --read-data` shows what it affects")
            case .invalidArgument: return (usage, nil)
            default: return (failure, nil)
            }
        case let error as SnapshotError:
            switch error.code {
            case .notFound, .ambiguous: return (usage, "list them with `cairn snapshots` or `cairn restorepoints`")
            case .invalidArgument: return (usage, nil)
            case .conflict: return (failure, "pass --existing skip or --existing overwrite")
            default: return (failure, nil)
            }
        case let error as ProtectionError:
            switch error.code {
            case .invalidTransform, .invalidBlueprint: return (usage, nil)
            case .volumeUnreachable: return (failure, "pass --volume-access mover")
            default: return (failure, nil)
            }
        case let error as KubeError:
            return (error.code == .configuration ? usage : failure,
                    error.code == .configuration ? "--kubeconfig and --context choose the cluster" : nil)
        default:
            return (failure, nil)
        }
    }
}

/// Runs a command body, turning errors into a message on stderr and the documented exit code.
func runReporting(_ body: () async throws -> Int32) async throws {
    let code: Int32
    do {
        code = try await body()
    } catch {
        let (exitCode, hint) = Exit.report(error)
        printError("\(error)" + (hint.map { " (\($0))" } ?? ""))
        code = exitCode
    }
    if code != 0 { throw ExitCode(code) }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("cairn: \(message)\n".utf8))
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    FileHandle.standardOutput.write(try encoder.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
}

func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
}

func formatDate(_ date: Date) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    f.timeZone = TimeZone.current
    return f.string(from: date)
}

/// Prints a table with aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    print(line(header))
    print(line(widths.map { String(repeating: "-", count: $0) }))
    for row in rows { print(line(row)) }
}
