import Foundation
import StorageTesting
import Testing

/// Runs the built `cairn` binary as a user would.
struct CLI {
    static let binary = CairnBinary.path

    var repo: String
    var password = "test password"
    var extraEnv: [String: String] = [:]

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_REPOSITORY"] = repo
        env["CAIRN_PASSWORD"] = password
        env["CAIRN_KDF_N"] = "1024"
        for (k, v) in extraEnv { env[k] = v }
        return env
    }

    struct Result: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The command line that runs cairn with `args` (behind `prefix`, e.g. a program that drops privileges).
    func commandLine(_ args: [String], prefix: [String] = []) -> [String] {
        prefix + [Self.binary] + args
    }

    @discardableResult
    func run(_ args: String..., prefix: [String] = []) async throws -> Result {
        try await run(args, prefix: prefix)
    }

    /// Runs cairn to completion (`ChildProcess.run`: posix_spawn and waitpid for exactly that child, on a
    /// thread of its own; Foundation's Process, started from several threads at once, sometimes never reaps
    /// its child and waits forever).
    @discardableResult
    func run(_ args: [String], prefix: [String] = []) async throws -> Result {
        let result = try await ChildProcess.run(commandLine(args, prefix: prefix), environment: environment)
        return Result(status: result.status, stdout: result.stdout, stderr: result.stderr)
    }

    /// Runs and requires success.
    @discardableResult
    func ok(_ args: String..., sourceLocation: SourceLocation = #_sourceLocation) async throws -> Result {
        let r = try await run(args)
        #expect(r.status == 0, "cairn \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        return r
    }

    func json(_ args: String...) async throws -> Any {
        let r = try await run(args + ["--json"])
        guard r.status == 0 else { throw CLIFailure(message: "exit \(r.status): \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }
}

struct CLIFailure: Error { var message: String }
