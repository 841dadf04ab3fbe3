import Foundation
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

    private static let lock = NSLock()
    nonisolated(unsafe) private static var servers: [String: MotoServer] = [:]

    /// One server of each kind per test process, started on first use; it stops when the process exits.
    public static func shared(authenticated: Bool = false, tls: Bool = false) throws -> MotoServer {
        try lock.withLock {
            let key = "\(authenticated)-\(tls)"
            if let server = servers[key] { return server }
            let server = try MotoServer(authenticated: authenticated, tls: tls)
            servers[key] = server
            return server
        }
    }

    public init(authenticated: Bool = false, tls: Bool = false) throws {
        port = try Loopback.freePort()
        let log = NSTemporaryDirectory() + "/cairn-moto-\(port).log"
        var tlsArguments: [String] = []
        if tls {
            // A private CA and a certificate for 127.0.0.1 signed by it.
            let dir = NSTemporaryDirectory() + "/cairn-moto-tls-\(port)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for command in [
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt",
                 "-days", "2", "-subj", "/CN=cairn-test-ca"],
                ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/server.key", "-out", dir + "/server.csr",
                 "-subj", "/CN=127.0.0.1"],
                ["sh", "-c", "printf 'subjectAltName=IP:127.0.0.1\\n' > \(dir)/ext.cnf && openssl x509 -req -in \(dir)/server.csr "
                 + "-CA \(dir)/ca.crt -CAkey \(dir)/ca.key -CAcreateserial -days 2 -extfile \(dir)/ext.cnf -out \(dir)/server.crt"],
            ] {
                let r = try ChildProcess.run(command)
                guard r.status == 0 else { throw FixtureError("\(command[0]): \(r.stderr)") }
            }
            caFile = dir + "/ca.crt"
            tlsArguments = ["-c", dir + "/server.crt", "-k", dir + "/server.key"]
        } else {
            caFile = nil
        }
        // The first three requests (creating the IAM user, its policy and its key) need no signature;
        // every request after them is authenticated.
        pid = try ChildProcess.startPythonDaemon(entry: "moto.server:main",
                                                 arguments: ["moto_server", "-H", "127.0.0.1", "-p", "\(port)"] + tlsArguments,
                                           environment: authenticated ? ["INITIAL_NO_AUTH_ACTION_COUNT": "3"] : [:],
                                           log: log)
        let deadline = Date().addingTimeInterval(60)
        while !Loopback.isListening(port) {
            guard Date() < deadline else { throw FixtureError("moto_server did not start; see \(log)") }
            usleep(100_000)
        }
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
            let r = try ChildProcess.run(command, environment: bootstrap)
            guard r.status == 0 else { throw FixtureError("\(command.joined(separator: " ")): \(r.stderr)") }
        }
        let key = try ChildProcess.run(["aws", "--endpoint-url", e, "iam", "create-access-key", "--user-name", "cairn",
                                        "--output", "json"], environment: bootstrap)
        guard key.status == 0, let json = try JSONSerialization.jsonObject(with: Data(key.stdout.utf8)) as? [String: Any],
              let access = json["AccessKey"] as? [String: Any], let id = access["AccessKeyId"] as? String,
              let secret = access["SecretAccessKey"] as? String
        else { throw FixtureError("create-access-key failed: \(key.stderr)") }
        accessKeyID = id
        secretAccessKey = secret
    }

    deinit { kill(pid, SIGTERM) }

    /// Environment for the AWS CLI (and restic) with this server's credentials.
    public var environment: [String: String] {
        var env = ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1"]
        if let caFile { env["AWS_CA_BUNDLE"] = caFile }
        return env
    }

    /// Runs the AWS CLI against this server.
    @discardableResult
    public func aws(_ arguments: [String], region: String = "us-east-1") throws -> ChildProcess.Result {
        var env = environment
        env["AWS_DEFAULT_REGION"] = region
        return try ChildProcess.run(["aws", "--endpoint-url", endpoint] + arguments, environment: env)
    }

    /// Creates a bucket with a fresh name and returns it.
    public func makeBucket(_ prefix: String = "cairn", objectLock: Bool = false, region: String = "us-east-1") throws -> String {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        var args = ["s3api", "create-bucket", "--bucket", name]
        if region != "us-east-1" { args += ["--create-bucket-configuration", "LocationConstraint=\(region)"] }
        if objectLock { args.append("--object-lock-enabled-for-bucket") }
        let r = try aws(args, region: region)
        guard r.status == 0 else { throw FixtureError("create-bucket \(name): \(r.stderr)") }
        return name
    }

}
