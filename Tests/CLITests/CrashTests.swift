import Foundation
import StorageTesting
import Testing

/// kill -9 at random moments during backup and prune, many times over: afterwards `check --read-data`
/// passes and every snapshot that exists restores byte for byte.
@Suite("Crash safety under kill -9", .serialized)
struct CrashTests {
    /// Picks kill moments uniformly within how long a run takes on this machine, learnt from runs that
    /// finished on their own, so the kills land inside the work whatever the machine's speed.
    struct KillTimer {
        var estimate: Double
        var rng: SeededRandom

        mutating func delay() -> Double {
            Double(rng.next() % 1000) / 1000.0 * estimate
        }

        mutating func finished(after seconds: Double) {
            estimate = max(0.05, seconds)
        }
    }

    /// Starts cairn and kills it with SIGKILL after a delay from `timer` (if still running). Returns whether
    /// it was killed. The child is watched on a thread of its own (`onOwnThread`).
    func runAndKill(_ cli: CLI, _ args: [String], timer: inout KillTimer) async throws -> Bool {
        let delay = timer.delay()
        let (killed, seconds) = try await onOwnThread { () throws -> (Bool, Double) in
            let start = Date()
            let pid = try ChildProcess.start(cli.commandLine(args), environment: cli.environment)
            let deadline = start.addingTimeInterval(delay)
            var status: Int32 = 0
            while Date() < deadline {
                if waitpid(pid, &status, WNOHANG) == pid { return (false, Date().timeIntervalSince(start)) }
                usleep(1_000)
            }
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return (true, 0)
        }
        if !killed { timer.finished(after: seconds) }
        return killed
    }

    func timed(_ body: () async throws -> Void) async rethrows -> Double {
        let start = Date()
        try await body()
        return Date().timeIntervalSince(start)
    }

    func verifyAll(_ cli: CLI, _ dir: TemporaryDirectory, states: [String: [String: String]], round: Int) async throws {
        let check = try await cli.run("repo", "check", "--read-data")
        #expect(check.status == 0, "round \(round): check failed: \(check.stderr)")
        let list = try await cli.json("snapshots") as! [[String: Any]]
        for snapshot in list {
            let id = snapshot["id"] as! String
            let tag = (snapshot["tags"] as! [String]).first!
            let target = dir.sub("verify-\(round)-\(id.prefix(8))")
            try await cli.ok("restore", String(id.prefix(12)), "--target", target)
            #expect(try TestFiles.digest(target + "/src", includeTimes: false) == states[tag], "snapshot \(tag) differs")
            try? FileManager.default.removeItem(atPath: target)
        }
    }

    @Test("kill -9 during backups, repeatedly")
    func killDuringBackup() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        var rng = SeededRandom(seed: 99)
        try TestFiles.makeTree(at: dir.sub("src"), seed: 1, files: 60, largeFileBytes: 6 << 20)
        var states: [String: [String: String]] = [:]
        states["s0"] = try TestFiles.digest(dir.sub("src"), includeTimes: false)
        let first = try await timed { try await cli.ok("backup", dir.sub("src"), "--tag", "s0") }
        var timer = KillTimer(estimate: first, rng: SeededRandom(seed: 1234))
        var killed = 0
        for round in 1...12 {
            try TestFiles.write(dir.sub("src/round\(round).bin"), rng.bytes(Int(rng.next() % 4_000_000) + 500_000))
            try TestFiles.write(dir.sub("src/d1/e1/f1.txt"), rng.text(40_000))
            let tag = "s\(round)"
            states[tag] = try TestFiles.digest(dir.sub("src"), includeTimes: false)
            // --force reads everything, so each run has new and old data to write and deduplicate.
            if try await runAndKill(cli, ["backup", dir.sub("src"), "--tag", tag, "--force"], timer: &timer) { killed += 1 }
            if round % 4 == 0 { try await verifyAll(cli, dir, states: states, round: round) }
        }
        #expect(killed >= 4, "only \(killed) of 12 runs were killed; the test did not exercise crashes")
        try await cli.ok("backup", dir.sub("src"), "--tag", "final")
        states["final"] = try TestFiles.digest(dir.sub("src"), includeTimes: false)
        try await verifyAll(cli, dir, states: states, round: 99)
    }

    @Test("kill -9 during prune, repeatedly")
    func killDuringPrune() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let cli = CLI(repo: dir.sub("repo"))
        try await cli.ok("repo", "init")
        var rng = SeededRandom(seed: 7)
        var states: [String: [String: String]] = [:]
        for i in 0..<8 {
            try TestFiles.write(dir.sub("src/file\(i).bin"), rng.bytes(3_000_000))
            if i > 1 { try FileManager.default.removeItem(atPath: dir.sub("src/file\(i - 2).bin")) }
            states["s\(i)"] = try TestFiles.digest(dir.sub("src"), includeTimes: false)
            try await cli.ok("backup", dir.sub("src"), "--tag", "s\(i)")
        }
        var timer = KillTimer(estimate: 0.5, rng: SeededRandom(seed: 4321))
        var killed = 0
        for round in 1...10 {
            // Forget one more snapshot each round, then prune and kill it somewhere along the way.
            let list = try await cli.json("snapshots") as! [[String: Any]]
            if list.count > 2, round % 2 == 1 {
                let oldest = list.first!
                try await cli.ok("forget", String((oldest["id"] as! String).prefix(12)))
                states.removeValue(forKey: (oldest["tags"] as! [String])[0])
            }
            if try await runAndKill(cli, ["prune", "--max-unused", "0.1"], timer: &timer) { killed += 1 }
            try await verifyAll(cli, dir, states: states, round: round)
        }
        #expect(killed >= 3, "only \(killed) of 10 prunes were killed")
        try await cli.ok("prune")
        // A completed prune removes whatever the killed ones left behind.
        let check = try await cli.json("repo", "check", "--read-data") as! [String: Any]
        #expect((check["warnings"] as! [String]).isEmpty, "\(check["warnings"]!)")
        let temporary = (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("repo/tmp"))) ?? []
        #expect(temporary.isEmpty)
        try await verifyAll(cli, dir, states: states, round: 100)
    }
}
