import Foundation
import StorageTesting
import Testing

@Suite("cairn CLI: exit codes and bad input")
struct CLITests {
    @Test("init, backup, snapshots, ls, restore and check work end to end with JSON output")
    func endToEnd() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"))
        let cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        let backup = try await cli.json("backup", dir.sub("src")) as! [String: Any]
        let id = backup["snapshot"] as! String
        let list = try await cli.json("snapshots") as! [[String: Any]]
        #expect(list.map { $0["id"] as! String } == [id])
        let ls = try await cli.json("ls", String(id.prefix(8))) as! [[String: Any]]
        #expect(ls.contains { $0["path"] as? String == "/src/d0/e0/f0.txt" })
        try await cli.ok("restore", "latest", "--target", dir.sub("out"))
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
        let check = try await cli.json("repo", "check", "--read-data") as! [String: Any]
        #expect(check["ok"] as? Bool == true)
    }

    @Test("app export copies an application's newest restore point (or --all) into a new paired repository; an unknown application creates nothing")
    func appExport() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"))
        let source = CLI(repo: dir.sub("source"))
        try await source.ok("repo", "init")
        // Restore points are snapshots tagged as such, with their namespace.
        for round in 1...2 {
            try Data("round \(round)".utf8).write(to: URL(fileURLWithPath: dir.sub("src/round.txt")))
            try await source.ok("backup", dir.sub("src"), "--tag", "cairn.dev/restorepoint", "--tag", "namespace=shop")
        }
        try await source.ok("backup", dir.sub("src"), "--tag", "cairn.dev/restorepoint", "--tag", "namespace=other")
        let newest = try #require((try await source.json("snapshots") as? [[String: Any]])?
            .filter { ($0["tags"] as? [String])?.contains("namespace=shop") == true }.last?["id"] as? String)
        var destination = CLI(repo: dir.sub("destination"), password: "another password")
        destination.extraEnv = ["CAIRN_FROM_PASSWORD": source.password]
        let unknown = try await destination.run("app", "export", "nowhere", "--from-repo", dir.sub("source"))
        #expect(unknown.status != 0 && unknown.stderr.contains("no restore point of namespace nowhere"), "\(unknown.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("destination")), "nothing created for it")
        let first = try await destination.ok("app", "export", "shop", "--from-repo", dir.sub("source"))
        #expect(first.stdout.contains("created repository") && first.stdout.contains("1 snapshot(s)"), "\(first.stdout)")
        let copied = try #require(try await destination.json("snapshots") as? [[String: Any]])
        #expect(copied.count == 1 && (copied.first?["tags"] as? [String])?.contains("namespace=shop") == true)
        // The one copied is the newest: it holds the second round's file.
        try await destination.ok("restore", "latest", "--target", dir.sub("newest"))
        #expect(try String(contentsOfFile: dir.sub("newest/src/round.txt"), encoding: .utf8) == "round 2")
        #expect(first.stdout.contains(String(newest.prefix(8))), "\(first.stdout)")
        let all = try await destination.ok("app", "export", "shop", "--all", "--from-repo", dir.sub("source"))
        #expect(all.stdout.contains("2 snapshot(s)") && all.stdout.contains("(copied before)"), "\(all.stdout)")
        try await destination.ok("restore", "latest", "--target", dir.sub("out"))
        #expect(try TestFiles.digest(dir.sub("src")) == TestFiles.digest(dir.sub("out/src")))
    }

    @Test("wrong password → exit 11; not a repository → 10; newer format → 10; usage → 64")
    func exitCodes() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        cli.password = "not it"
        let wrong = try await cli.run("snapshots")
        #expect(wrong.status == 11)
        #expect(wrong.stderr.contains("wrong password"))
        #expect(!wrong.stderr.contains("not it"))

        // A reference that names nothing: the same exit code and the same kind of message, snapshot or restore point.
        let noSnapshot = try await CLI(repo: dir.sub("repo")).run("restore", "nope", "--target", dir.sub("x"))
        let noRestorePoint = try await CLI(repo: dir.sub("repo")).run("app", "restore", "nope")
        #expect(noSnapshot.status == 64 && noRestorePoint.status == 64, "\(noSnapshot.stderr) \(noRestorePoint.stderr)")
        #expect(noSnapshot.stderr.hasPrefix("cairn: no snapshot nope"), "\(noSnapshot.stderr)")
        #expect(noRestorePoint.stderr.hasPrefix("cairn: no restore point nope"), "\(noRestorePoint.stderr)")

        let notRepo = try await CLI(repo: dir.path).run("snapshots")
        #expect(notRepo.status == 10)
        #expect(notRepo.stderr.contains("no Cairn repository"))
        #expect(notRepo.stderr.contains("cairn repo init"), "the CLI names the command that creates one")

        try Data(#"{"cairn":"repository","version":99}"#.utf8).write(to: URL(fileURLWithPath: dir.sub("repo/format")))
        let newer = try await CLI(repo: dir.sub("repo")).run("snapshots")
        #expect(newer.status == 10)
        #expect(newer.stderr.contains("newer Cairn"))

        #expect(try await CLI(repo: dir.sub("repo")).run("restore", "latest").status == 64)
        let forgetAll = try await CLI(repo: dir.sub("repo")).run("forget")
        #expect(forgetAll.status == 64)
    }

    @Test("init refuses a non-empty directory and an existing repository")
    func initRefuses() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.write(dir.sub("full/file"), Data("x".utf8))
        let r = try await CLI(repo: dir.sub("full")).run("repo", "init")
        #expect(r.status != 0)
        #expect(r.stderr.contains("not empty"))
        #expect(FileManager.default.fileExists(atPath: dir.sub("full/file")))
    }

    @Test("keys: a second password works, then is removed")
    func keys() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        cli.extraEnv["CAIRN_NEW_PASSWORD"] = "second password"
        let added = try await cli.json("repo", "key", "add") as! [String: String]
        var second = CLI(repo: dir.sub("repo"))
        second.password = "second password"
        try await second.ok("snapshots")
        let keys = try await cli.json("repo", "key", "list") as! [[String: Any]]
        #expect(keys.count == 2)
        try await cli.ok("repo", "key", "remove", String(added["key"]!.prefix(12)))
        #expect(try await second.run("snapshots").status == 11)
    }

    @Test("an unreadable source file is reported, the backup goes on, and the exit code says partial")
    func unreadableSource() async throws {
        // Root reads everything, so run cairn as `nobody` with setpriv.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        chmod(dir.path, 0o777)
        try TestFiles.write(dir.sub("src/readable.txt"), Data("fine".utf8), mode: 0o644)
        try TestFiles.write(dir.sub("src/secret.txt"), Data("hidden".utf8), mode: 0o000)
        try TestFiles.write(dir.sub("src/more/also-fine.txt"), Data("fine too".utf8), mode: 0o644)
        for p in ["src", "src/more"] { chmod(dir.sub(p), 0o755) }
        let cli = CLI(repo: dir.sub("repo"))
        let asNobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        let initResult = try await cli.run(["repo", "init"], prefix: asNobody)
        try #require(initResult.status == 0, "\(initResult.stderr)")
        let r = try await cli.run(["backup", dir.sub("src")], prefix: asNobody)
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("secret.txt"))
        #expect(r.stderr.contains("ermission denied"))
        try await cli.ok("restore", "latest", "--target", dir.sub("out"))
        #expect(FileManager.default.fileExists(atPath: dir.sub("out/src/more/also-fine.txt")))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("out/src/secret.txt")))
    }

    @Test("flipped bytes in a pack, an index file and a snapshot file are each found by check")
    func corruptionFound() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TestFiles.makeTree(at: dir.sub("src"), largeFileBytes: 1 << 20)
        let cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        try await cli.ok("backup", dir.sub("src"))
        try await cli.ok("backup", dir.sub("src"), "--force", "--tag", "second")
        let pristine = dir.sub("pristine")
        try FileManager.default.copyItem(atPath: dir.sub("repo"), toPath: pristine)

        func files(_ kind: String) throws -> [String] {
            let base = dir.sub("repo/\(kind)")
            if kind == "data" {
                return try FileManager.default.subpathsOfDirectory(atPath: base).filter { $0.count > 60 }.map { base + "/" + $0 }
            }
            return try FileManager.default.contentsOfDirectory(atPath: base).map { base + "/" + $0 }
        }
        func flip(_ path: String, at offset: Int) throws {
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            data[min(offset, data.count - 1)] ^= 0x20
            try data.write(to: URL(fileURLWithPath: path))
        }
        func reset() throws {
            try FileManager.default.removeItem(atPath: dir.sub("repo"))
            try FileManager.default.copyItem(atPath: pristine, toPath: dir.sub("repo"))
        }

        try flip(files("data")[0], at: 200)
        let pack = try await cli.run("repo", "check", "--read-data")
        #expect(pack.status == 13)
        #expect(pack.stderr.contains("damaged: snapshot"))
        #expect(pack.stdout.contains("cannot be restored intact"))
        try reset()

        try flip(files("index")[0], at: 40)
        let index = try await cli.run("repo", "check")
        #expect(index.status == 13)
        #expect(index.stderr.contains("index/"))
        try reset()

        try flip(files("snapshots")[0], at: 40)
        let snapshot = try await cli.run("repo", "check")
        #expect(snapshot.status == 13)
        #expect(snapshot.stderr.contains("snapshots/"))
        // The other snapshot still lists and restores.
        let list = try await cli.run("snapshots")
        #expect(list.stdout.contains("1 snapshot(s)"))
        try reset()

        let truncatedPack = try files("data")[0]
        let bytes = try Data(contentsOf: URL(fileURLWithPath: truncatedPack))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncatedPack))
        #expect(try await cli.run("repo", "check").status == 13)
        try reset()

        try FileManager.default.removeItem(atPath: files("data")[0])
        let deleted = try await cli.run("repo", "check")
        #expect(deleted.status == 13)
        #expect(deleted.stderr.contains("missing"))
    }

    @Test("forget with a policy, then prune, keeps what the policy keeps and check passes")
    func forgetPrune() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        var rng = SeededRandom(seed: 3)
        var digests: [String: [String: String]] = [:]
        for i in 0..<4 {
            try TestFiles.write(dir.sub("src/gen\(i).bin"), rng.bytes(700_000))
            try TestFiles.write(dir.sub("src/changing.txt"), rng.text(300_000))
            let b = try await cli.json("backup", dir.sub("src")) as! [String: Any]
            digests[b["snapshot"] as! String] = try TestFiles.digest(dir.sub("src"))
        }
        let result = try await cli.json("forget", "--keep-last", "2", "--prune") as! [String: Any]
        #expect((result["remove"] as! [Any]).count == 2)
        let remaining = (try await cli.json("snapshots") as! [[String: Any]]).map { $0["id"] as! String }
        #expect(remaining.count == 2)
        try await cli.ok("repo", "check", "--read-data")
        for id in remaining {
            try await cli.ok("restore", String(id.prefix(10)), "--target", dir.sub("r-\(id.prefix(6))"))
            #expect(try TestFiles.digest(dir.sub("r-\(id.prefix(6))/src")) == digests[id])
        }
    }
}
