import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`) on a loopback port, with
/// buckets made by the independent AWS CLI. The `authenticated` variant verifies every request's
/// signature against an IAM user created at start (moto 5.2 miscomputes signatures of list requests
/// whose prefix contains '/', the AWS CLI's own included, so only credential checks run against it).
public final class MotoServer: @unchecked Sendable {
    public let port: Int
    public let accessKeyID: String
    public let secretAccessKey: String
    public let pid: pid_t
    /// With TLS: the CA that signed the server's certificate (for 127.0.0.1).
    public let caFile: String?
    public var endpoint: String { "\(caFile == nil ? "http" : "https")://127.0.0.1:\(port)" }

    private static let servers = Mutex<[String: Task<MotoServer, any Error>]>([:])

    /// One server of each kind per test process, started on first use (on a thread of its own); it stops
    /// when the process exits.
    public static func shared(authenticated: Bool = false, tls: Bool = false) async throws -> MotoServer {
        let key = "\(authenticated)-\(tls)"
        let start = servers.withLock { servers in
            if let start = servers[key] { return start }
            let start = Task { try await onOwnThread { try MotoServer(authenticated: authenticated, tls: tls) } }
            servers[key] = start
            return start
        }
        return try await start.value
    }

    /// Starts a server, holding the calling thread until it answers (`shared` waits without holding one).
    public init(authenticated: Bool = false, tls: Bool = false) throws {
        var tlsArguments: [String] = []
        if tls {
            // A private CA and a certificate for 127.0.0.1 signed by it.
            let dir = NSTemporaryDirectory() + "/cairn-moto-tls-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for command in [
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt",
                 "-days", "2", "-subj", "/CN=cairn-test-ca"],
                ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/server.key", "-out", dir + "/server.csr",
                 "-subj", "/CN=127.0.0.1"],
                ["sh", "-c", "printf 'subjectAltName=IP:127.0.0.1\\n' > \(dir)/ext.cnf && openssl x509 -req -in \(dir)/server.csr "
                 + "-CA \(dir)/ca.crt -CAkey \(dir)/ca.key -CAcreateserial -days 2 -extfile \(dir)/ext.cnf -out \(dir)/server.crt"],
            ] {
                let r = try ChildProcess.runBlocking(command)
                guard r.status == 0 else { throw FixtureError("\(command[0]): \(r.stderr)") }
            }
            caFile = dir + "/ca.crt"
            tlsArguments = ["-c", dir + "/server.crt", "-k", dir + "/server.key"]
        } else {
            caFile = nil
        }
        // The first three requests (creating the IAM user, its policy and its key) need no signature;
        // every request after them is authenticated.
        (port, pid) = try Self.start(arguments: tlsArguments,
                                     environment: authenticated ? ["INITIAL_NO_AUTH_ACTION_COUNT": "3"] : [:])
        guard authenticated else {
            accessKeyID = "cairn-test"
            secretAccessKey = "cairn-test-secret"
            return
        }
        var bootstrap = ["AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap",
                         "AWS_DEFAULT_REGION": "us-east-1"]
        if let caFile { bootstrap["AWS_CA_BUNDLE"] = caFile }
        let e = "\(tls ? "https" : "http")://127.0.0.1:\(port)"
        for command in [
            ["aws", "--endpoint-url", e, "iam", "create-user", "--user-name", "cairn"],
            ["aws", "--endpoint-url", e, "iam", "put-user-policy", "--user-name", "cairn", "--policy-name", "all",
             "--policy-document", #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#],
        ] {
            let r = try ChildProcess.runBlocking(command, environment: bootstrap)
            guard r.status == 0 else { throw FixtureError("\(command.joined(separator: " ")): \(r.stderr)") }
        }
        let key = try ChildProcess.runBlocking(["aws", "--endpoint-url", e, "iam", "create-access-key", "--user-name", "cairn",
                                        "--output", "json"], environment: bootstrap)
        guard key.status == 0, let json = try JSONSerialization.jsonObject(with: Data(key.stdout.utf8)) as? [String: Any],
              let access = json["AccessKey"] as? [String: Any], let id = access["AccessKeyId"] as? String,
              let secret = access["SecretAccessKey"] as? String
        else { throw FixtureError("create-access-key failed: \(key.stderr)") }
        accessKeyID = id
        secretAccessKey = secret
    }

    deinit { kill(pid, SIGTERM) }

    /// Starts moto_server on a free port and waits until it serves. The port was free when chosen, but
    /// anything may take it before moto binds it (an outgoing connection's local port: free ports come
    /// from the ephemeral range), and then moto exits and something else answers there. So it counts as
    /// started only when moto itself says it runs and still does; otherwise it starts again on another port.
    static func start(arguments: [String], environment: [String: String]) throws -> (port: Int, pid: pid_t) {
        var failures: [String] = []
        for _ in 1...5 {
            let port = try Loopback.freePort()
            let log = NSTemporaryDirectory() + "/cairn-moto-\(port).log"
            unlink(log)
            let pid = try ChildProcess.startPythonDaemon(entry: "moto.server:main",
                                                         arguments: ["moto_server", "-H", "127.0.0.1", "-p", "\(port)"] + arguments,
                                                         environment: environment, log: log)
            let deadline = Date().addingTimeInterval(60)
            while true {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    failures.append("port \(port): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "exited")")
                    break
                }
                let said = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if said.contains("Running on"), Loopback.isListening(port) { return (port, pid) }
                guard Date() < deadline else {
                    kill(pid, SIGKILL)
                    throw FixtureError("moto_server did not start within 60 s; see \(log)")
                }
                usleep(100_000)
            }
        }
        throw FixtureError("moto_server did not start: \(failures.joined(separator: "; "))")
    }

    /// Environment for the AWS CLI (and restic) with this server's credentials.
    public var environment: [String: String] {
        var env = ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1"]
        if let caFile { env["AWS_CA_BUNDLE"] = caFile }
        return env
    }

    /// Runs the AWS CLI against this server.
    @discardableResult
    public func aws(_ arguments: [String], region: String = "us-east-1") async throws -> ChildProcess.Result {
        var env = environment
        env["AWS_DEFAULT_REGION"] = region
        return try await ChildProcess.run(["aws", "--endpoint-url", endpoint] + arguments, environment: env)
    }

    /// Creates a bucket with a fresh name and returns it.
    public func makeBucket(_ prefix: String = "cairn", objectLock: Bool = false, region: String = "us-east-1") async throws -> String {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        var args = ["s3api", "create-bucket", "--bucket", name]
        if region != "us-east-1" { args += ["--create-bucket-configuration", "LocationConstraint=\(region)"] }
        if objectLock { args.append("--object-lock-enabled-for-bucket") }
        let r = try await aws(args, region: region)
        guard r.status == 0 else { throw FixtureError("create-bucket \(name): \(r.stderr)") }
        return name
    }

}
