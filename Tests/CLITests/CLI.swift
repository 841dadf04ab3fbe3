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

    func process(_ args: [String], prefix: [String] = []) -> Process {
        let p = Process()
        if prefix.isEmpty {
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = args
        } else {
            p.executableURL = URL(fileURLWithPath: prefix[0])
            p.arguments = Array(prefix.dropFirst()) + [Self.binary] + args
        }
        p.environment = environment
        return p
    }

    @discardableResult
    func run(_ args: String..., prefix: [String] = []) async throws -> Result {
        try await run(args, prefix: prefix)
    }

    /// Runs cairn to completion on a thread of its own (`onOwnThread`).
    @discardableResult
    func run(_ args: [String], prefix: [String] = []) async throws -> Result {
        try await onOwnThread { [self] in try runBlocking(args, prefix: prefix) }
    }

    func runBlocking(_ args: [String], prefix: [String]) throws -> Result {
        let p = process(args, prefix: prefix)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
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
