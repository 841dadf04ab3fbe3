import Foundation
import StorageTesting
import Testing

@Suite("The CLI with repositories in S3 (moto_server)", .serialized)
struct S3CLITests {
    func cli(_ moto: MotoServer, bucket: String) -> CLI {
        var cli = CLI(repo: "s3://\(bucket)/backups/main")
        cli.extraEnv = moto.environment.merging(["CAIRN_S3_ENDPOINT": moto.endpoint]) { _, new in new }
        return cli
    }

    @Test("init, backup, snapshots, restore and check --read-data with an s3:// repository")
    func roundTrip() async throws {
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket()
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"), seed: 5, files: 30)
        let cli = cli(moto, bucket: bucket)
        let initResult = try await cli.run("repo", "init")
        #expect(initResult.status == 0, "\(initResult.stderr)")
        #expect(initResult.stdout.contains("s3://\(bucket)/backups/main"))
        let backup = try await cli.run("backup", dir.sub("src"))
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(try await cli.run("snapshots", "--json").stdout.contains("\"paths\""))
        let restore = try await cli.run("restore", "latest", "--target", dir.sub("out"))
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        let check = try await cli.run("repo", "check", "--read-data")
        #expect(check.status == 0, "\(check.stderr)")
        // Without credentials: a clear error, not a crash.
        var anonymous = cli
        anonymous.extraEnv = ["CAIRN_S3_ENDPOINT": moto.endpoint, "AWS_ACCESS_KEY_ID": "", "HOME": dir.path,
                              "AWS_SHARED_CREDENTIALS_FILE": dir.sub("none")]
        let noCredentials = try await anonymous.run("snapshots")
        #expect(noCredentials.status != 0)
        #expect(noCredentials.stderr.contains("no S3 credentials"), "\(noCredentials.stderr)")
    }

    @Test("a protected repository: objects are locked, forget keeps snapshots under retention, prune keeps their packs")
    func protectedRepository() async throws {
        let moto = try await MotoServer.shared()
        let bucket = try await moto.makeBucket("locked", objectLock: true)
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"), seed: 9, files: 10)
        let cli = cli(moto, bucket: bucket)
        #expect(try await cli.run("repo", "init", "--protection-days", "2").status == 0)
        #expect(try await cli.run("backup", dir.sub("src")).status == 0)
        try TestFiles.write(dir.sub("src/more"), Data(repeating: 1, count: 200_000))
        #expect(try await cli.run("backup", dir.sub("src")).status == 0)
        // The protection is read back from the repository: no flag needed after init.
        let forget = try await cli.run("forget", "--keep-last", "1", "--prune", "--json")
        #expect(forget.status == 0, "\(forget.stderr)")
        #expect(forget.stdout.contains("protected until"), "\(forget.stdout)")
        let snapshots = try await cli.run("snapshots", "--json")
        #expect(snapshots.stdout.components(separatedBy: "\"paths\"").count - 1 == 2)
        #expect(try await cli.run("repo", "check", "--read-data").status == 0)
        let head = try await moto.aws(["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "backups/main/data/",
                                 "--query", "Contents[0].Key", "--output", "text"])
        let key = head.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.hasPrefix("backups/main/data/"), "\(head.stdout) \(head.stderr)")
        let retention = try await moto.aws(["s3api", "head-object", "--bucket", bucket, "--key", key])
        #expect(retention.stdout.contains("\"ObjectLockMode\": \"COMPLIANCE\""), "\(retention.stdout) \(retention.stderr)")
    }
}
