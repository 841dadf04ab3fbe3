import Foundation
import Kube
import Repository
import Snapshot

/// The command of a `session` phase (`Blueprint.Session`), kept running from its `ready` line until it is
/// released after the volume capture: a database session that holds a backup mode or a lock only as long
/// as it lives.
///
/// One task owns the exec: it writes `start`, reads stdout until the `ready` line (what came before is the
/// phase's text output), then keeps reading — into an artifact (`output: artifact`), or drained — while a
/// second task waits for the release to write `end`. `release()` reports how it ended: a session that ended
/// before its release means the fence did not hold, and fails the backup.
public final class HeldSession: @unchecked Sendable {
    public let phase: Blueprint.Phase
    let pod: String
    let container: String?
    let record: PhaseRecord
    /// Stdout before the `ready` line, trimmed.
    public let readyOutput: String
    private let release: AsyncStream<Void>.Continuation
    private let run: Task<Ended, any Error>

    struct Ended: Sendable {
        var exitCode: Int32
        var stderr: String
        var stored: StreamContent.Stored?
        /// Whether the command ended before `end` was written.
        var beforeRelease: Bool
    }

    private init(phase: Blueprint.Phase, pod: String, container: String?, record: PhaseRecord, readyOutput: String,
                 release: AsyncStream<Void>.Continuation, run: Task<Ended, any Error>) {
        self.phase = phase
        self.pod = pod
        self.container = container
        self.record = record
        self.readyOutput = readyOutput
        self.release = release
        self.run = run
    }

    /// The longest a session may be held (the volume capture's length): beyond it the exec is closed.
    static let longestHold: Duration = .seconds(48 * 3600)

    /// Starts the command and waits (the phase's timeout) for its `ready` line. A command that exits or
    /// fails first, or is not ready in time, is a phase failure (the exec is closed).
    static func begin(_ phase: Blueprint.Phase, session: Blueprint.Session, runner: BlueprintRunner, pod: String,
                      container: String?, command: [String], record: PhaseRecord) async throws -> HeldSession {
        enum Ready: Sendable { case ready(String), ended, timedOut }
        let (readyEvents, readySignal) = AsyncStream<Ready>.makeStream()
        let (releaseEvents, releaseSignal) = AsyncStream<Void>.makeStream()
        let repository = runner.repository
        let artifact = phase.artifact
        let encoding = phase.streamEncoding
        let client = runner.client
        let namespace = runner.namespace
        let marker = Array(session.ready.utf8)
        let stderrLines = runner.stderrLines
        let run = Task<Ended, any Error> {
            do {
                return try await client.exec(pod: pod, namespace: namespace, container: container, command: command, stdin: true,
                                      timeout: longestHold) { exec in
                    try await exec.write(Array(session.start.utf8) + (session.start.hasSuffix("\n") ? [] : [10]))
                    let tail = StderrTail(lines: stderrLines)
                    // Until the ready line: stdout kept line by line.
                    var line: [UInt8] = []
                    var before: [UInt8] = []
                    var rest: [UInt8] = []
                    var ready = false
                    reading: while let piece = try await exec.next() {
                        switch piece {
                        case .stderr(let bytes): tail.add(bytes)
                        case .stdout(let bytes):
                            for (i, byte) in bytes.enumerated() {
                                if byte == 10 {
                                    if line.firstRange(of: marker) != nil {
                                        ready = true
                                        rest = Array(bytes[(i + 1)...])
                                        break
                                    }
                                    if before.count < 64 << 10 { before += line + [10] }
                                    line.removeAll(keepingCapacity: true)
                                } else {
                                    line.append(byte)
                                }
                            }
                            if ready { break reading }
                        }
                    }
                    guard ready else {
                        readySignal.yield(.ended)
                        return Ended(exitCode: try await exec.exitCode(), stderr: tail.text, stored: nil, beforeRelease: true)
                    }
                    readySignal.yield(.ready(String(decoding: before, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
                    let released = ReleaseFlag()
                    return try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await _ in releaseEvents {
                                released.set()
                                try await exec.write(Array(session.end.utf8) + (session.end.hasSuffix("\n") ? [] : [10]))
                                return
                            }
                        }
                        var stored: StreamContent.Stored?
                        var pending: [UInt8]? = rest.isEmpty ? nil : rest
                        func nextStdout() async throws -> [UInt8]? {
                            if let first = pending {
                                pending = nil
                                return first
                            }
                            while let piece = try await exec.next() {
                                switch piece {
                                case .stdout(let bytes): return bytes
                                case .stderr(let bytes): tail.add(bytes)
                                }
                            }
                            return nil
                        }
                        if artifact, let repository {
                            stored = try await StreamContent.store(in: repository, encoding: encoding) {
                                try await nextStdout()
                            }
                        } else {
                            // Nothing after the ready line is needed unless it is an artifact: drained.
                            while try await nextStdout() != nil {}
                        }
                        let code = try await exec.exitCode()
                        group.cancelAll()
                        return Ended(exitCode: code, stderr: tail.text, stored: stored, beforeRelease: !released.isSet)
                    }
                }
            } catch {
                // Not started, or broken before its ready line: say so now rather than at the timeout.
                readySignal.yield(.ended)
                throw error
            }
        }
        let timeout = Task {
            try? await Task.sleep(for: .seconds(phase.timeout))
            readySignal.yield(.timedOut)
        }
        defer { timeout.cancel() }
        var event = Ready.timedOut
        for await first in readyEvents {
            event = first
            break
        }
        let readyOutput: String
        switch event {
        case .ready(let text): readyOutput = text
        case .timedOut:
            run.cancel()
            throw ProtectionError(.phaseFailed, "the session did not print '\(session.ready)' within \(BlueprintRunner.period(phase.timeout)) "
                                  + "(timeout); it was closed")
        case .ended:
            let why: String
            do {
                let ended = try await run.value
                let stderr = BlueprintRunner.redact(ended.stderr, (try? await runner.secretValues(of: pod, container: container)) ?? [])
                why = "the session ended (exit status \(ended.exitCode)) before printing '\(session.ready)'"
                    + (stderr.isEmpty ? "" : "; stderr ends: \(stderr)")
            } catch let error as KubeError {
                why = "the session could not run: \(BlueprintRunner.describe(error, phase: phase))"
            } catch {
                why = "the session could not run: \(error)"
            }
            throw ProtectionError(.phaseFailed, why)
        }
        return HeldSession(phase: phase, pod: pod, container: container, record: record, readyOutput: readyOutput,
                           release: releaseSignal, run: run)
    }

    /// Ends every session, the last begun first, as one outcome (records, artifacts by phase name, the
    /// first failure).
    public static func end(_ sessions: [HeldSession], runner: BlueprintRunner) async -> BlueprintRunner.Outcome {
        var outcome = BlueprintRunner.Outcome()
        for session in sessions.reversed() {
            let (record, artifact, failure) = await session.end(runner: runner)
            outcome.records.append(record)
            if let artifact { outcome.artifacts[session.phase.name] = artifact }
            if outcome.failure == nil { outcome.failure = failure }
        }
        return outcome
    }

    /// Writes `end` and waits (the phase's timeout) for the command to exit. The record says how it ended;
    /// a failure says why the fence may not have held (it ended early, or exited non-zero) or the session
    /// did not end in time.
    public func end(runner: BlueprintRunner) async -> (record: PhaseRecord, artifact: Node?, failure: ProtectionError?) {
        let start = ContinuousClock.now
        release.yield()
        release.finish()
        var record = self.record
        record.phase = "\(phase.name) (end)"
        func failed(_ message: String) -> (PhaseRecord, Node?, ProtectionError?) {
            record.result = "failed"
            record.message = "session \(phase.name) in pod \(pod): \(message)"
            record.seconds = runner.seconds(since: start)
            return (record, nil, ProtectionError(.phaseFailed, record.message!))
        }
        let watchdog = Task { [run] in
            try? await Task.sleep(for: .seconds(phase.timeout))
            run.cancel()
        }
        defer { watchdog.cancel() }
        let ended: Ended
        do {
            ended = try await run.value
        } catch {
            return failed("did not exit within \(BlueprintRunner.period(phase.timeout)) of its end (timeout): \(error)")
        }
        record.exitCode = ended.exitCode
        let stderr = BlueprintRunner.redact(ended.stderr, (try? await runner.secretValues(of: pod, container: container)) ?? [])
        if ended.beforeRelease {
            return failed("the session ended (exit status \(ended.exitCode)) before it was released: its fence did not hold while the volumes were read"
                          + (stderr.isEmpty ? "" : "; stderr ends: \(stderr)"))
        }
        guard ended.exitCode == 0 else {
            return failed("exited with status \(ended.exitCode) at its end" + (stderr.isEmpty ? "" : "; stderr ends: \(stderr)"))
        }
        record.seconds = runner.seconds(since: start)
        var node: Node?
        if let stored = ended.stored {
            record.artifactBytes = stored.size
            record.artifactStreamedBytes = stored.compressedSize
            node = StreamContent.fileNode(named: phase.name, stored)
        }
        return (record, node, nil)
    }
}

/// Set once, read from another task.
final class ReleaseFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
