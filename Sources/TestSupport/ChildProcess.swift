import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work — waiting for a child process, polling it — on a thread of its own and waits for it
/// without holding a thread: a test that waits for a program never takes one of the cooperative pool's few
/// threads from the tests running beside it.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs programs for test fixtures with posix_spawn, waiting for exactly that child. Output goes to
/// temporary files, never pipes: a daemon the program starts (the cluster script starts several) cannot
/// keep a pipe open or a wait from returning. (Foundation's Process hung here.)
public enum ChildProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs a command to completion, with `stdin` as its standard input, waiting on a thread of its own
    /// (`onOwnThread`): tests run side by side on the cooperative pool's few threads (two on a two-core
    /// machine), and a test blocked in `waitpid` there stalls every other test's `await`s.
    public static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil)
        async throws -> Result
    {
        try await onOwnThread { try runBlocking(arguments, environment: environment, stdin: stdin) }
    }

    /// `run`, holding the calling thread: only where no `await` is possible (a `defer`, a synchronous
    /// callback, a thread of its own).
    public static func runBlocking(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil)
        throws -> Result
    {
        let base = NSTemporaryDirectory() + "/cairn-run-" + UUID().uuidString
        try Data((stdin ?? "").utf8).write(to: URL(fileURLWithPath: base + ".in"))
        defer { unlink(base + ".in"); unlink(base + ".out"); unlink(base + ".err") }
        let pid = try spawn(arguments, environment: environment, stdin: base + ".in", stdout: base + ".out",
                            stderr: base + ".err")
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw FixtureError("waitpid failed for \(arguments[0])") }
        }
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code,
                      stdout: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
    }

    /// Starts a program with no input and its output discarded; the caller waits for it (`waitpid`) or
    /// kills it.
    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> pid_t {
        try spawn(arguments, environment: environment, stdin: "/dev/null", stdout: "/dev/null", stderr: "/dev/null")
    }

    /// Starts a long-running Python program (`module:function` called with `arguments` as argv) that ends
    /// when this process does: a watchdog thread in it polls for this process and exits when it is gone.
    /// (Signals on parent death do not survive the interpreter shims of pyenv and friends.)
    public static func startPythonDaemon(entry: String, arguments: [String], environment: [String: String] = [:],
                                         log: String) throws -> pid_t {
        let parts = entry.split(separator: ":")
        let script = """
            import importlib, os, sys, threading, time
            parent = int(sys.argv[1])
            def watch():
                while True:
                    time.sleep(0.5)
                    try:
                        os.kill(parent, 0)
                    except OSError:
                        os._exit(0)
            threading.Thread(target=watch, daemon=True).start()
            sys.argv = sys.argv[2:]
            getattr(importlib.import_module("\(parts[0])"), "\(parts[1])")(sys.argv[1:])
            """
        return try spawn(["python3", "-c", script, String(getpid())] + arguments, environment: environment,
                         stdin: "/dev/null", stdout: log, stderr: log)
    }

    static func spawn(_ arguments: [String], environment: [String: String], stdin: String, stdout: String,
                      stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp)
        guard spawned == 0 else { throw FixtureError("cannot run \(arguments[0]): \(String(cString: strerror(spawned)))") }
        return pid
    }

}

public struct FixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
