import Concurrent
import Foundation
import Kube
import Repository
import Snapshot

/// Runs the phases of a blueprint action (or a list of hooks) in an application's namespace, with the
/// identity of whoever asked for the backup or restore (`client`): an exec, a task pod or a scale they
/// could not do themselves fails here as it would for them.
///
/// Phases run in order; a phase that fails with `onError: fail` stops the action, then every deferred phase
/// runs (each whatever the others did), and the action throws `ProtectionError(.phaseFailed)` naming the
/// phase, where it ran, its exit status and the last lines of its stderr. Artifacts (`output: artifact`)
/// are streamed from the command's stdout into the repository as they come; inputs are streamed from the
/// repository to the command's stdin.
public struct BlueprintRunner: Sendable {
    public let client: KubeClient
    public let namespace: String
    /// Where artifacts are stored and read.
    public let repository: Repository?
    /// How many of a failed command's last stderr lines are recorded.
    public var stderrLines = 10
    /// How long an exec waits for a running pod to run in.
    public var podWait: TimeInterval = 60

    public init(client: KubeClient, namespace: String, repository: Repository?) {
        self.client = client
        self.namespace = namespace
        self.repository = repository
    }

    /// The outcome of one action.
    public struct Outcome: Sendable {
        public var records: [PhaseRecord] = []
        /// Artifacts stored, by phase name.
        public var artifacts: [String: Node] = [:]
        /// The phase failure that failed the action (after its deferred phases ran), if any.
        public var failure: ProtectionError?
        /// Sessions still held (`exec.session`), in the order they began: release them after the capture.
        public var sessions: [HeldSession] = []

        /// Throws the failure, if any.
        public func check() throws(ProtectionError) {
            if let failure { throw failure }
        }
    }

    /// Runs `action` of `blueprint` for `workload` (nil for hooks). `inputs` are the artifacts of the
    /// backup, by phase name, for restore phases. A failed phase is in the outcome (`failure`, `check()`),
    /// with the records of every phase that ran; errors other than a phase's (the API server unreachable
    /// while reading the workload) are thrown.
    ///
    /// `point` is called once the action's consistent point exists: where its phase marked `point` says
    /// (`end`, or a line of the command's stderr), and at the latest when the action ends.
    /// `values`: template values for a workload that does not exist yet (beforeStart), given instead of
    /// `workload`.
    public func run(_ action: Blueprint.Action, named actionName: String, blueprint: String, workload: WorkloadRef?,
                    inputs: [String: Node] = [:], values given: [String: String] = [:], time: Date = Date(),
                    progress: @Sendable (String) -> Void = { _ in },
                    point: @escaping @Sendable () -> Void = {}) async throws -> Outcome {
        let signal = PointSignal(point)
        defer { signal.fire() }
        var values = given.merging(["namespace": namespace, "time": Timestamp.format(time)]) { _, b in b }
        if let workload {
            let control = WorkloadControl(client: client, namespace: namespace)
            let object = try await control.get(workload)
            values.merge(Self.templateValues(workload, object: object)) { _, b in b }
            let running = try await control.pods(of: object).filter { $0.deletionTimestamp == nil && Pod($0).phase == "Running" }
            values["workload.pods"] = running.map(\.name).sorted().joined(separator: " ")
        }
        var outcome = Outcome()
        var failure: ProtectionError?
        for phase in action.phases {
            do {
                try await runPhase(phase, action: actionName, blueprint: blueprint, workload: workload, values: &values,
                                   inputs: inputs, outcome: &outcome, progress: progress, point: signal)
            } catch let error as ProtectionError where error.code == .phaseFailed && phase.onError == .fail {
                failure = error
                break
            } catch let error as ProtectionError where error.code == .phaseFailed {
                progress("  phase \(phase.name) failed (onError: continue): \(error.message)")
            }
        }
        for phase in action.deferred {
            do {
                try await runPhase(phase, action: actionName, blueprint: blueprint, workload: workload, values: &values,
                                   inputs: inputs, outcome: &outcome, progress: progress)
            } catch let error as ProtectionError where error.code == .phaseFailed {
                progress("  deferred phase \(phase.name) failed: \(error.message)")
                if phase.onError == .fail && failure == nil { failure = error }
            }
        }
        if var failure {
            let deferred = Set(action.deferred.map(\.name))
            let ran = outcome.records.filter { deferred.contains($0.phase) }
            if !ran.isEmpty {
                failure.message += "; deferred phases ran: " + ran.map { "\($0.phase) \($0.result)" }.joined(separator: ", ")
            }
            outcome.failure = failure
        }
        return outcome
    }

    /// A workload's template values (`BlueprintTemplate`), from its object — as it runs, or as a restore
    /// point captured it (before it is created again).
    public static func templateValues(_ workload: WorkloadRef, object: KubeObject?) -> [String: String] {
        var values = ["workload.kind": workload.kind, "workload.name": workload.name,
                      "workload.replicas": String(object?["spec", "replicas"]?.int ?? 1), "workload.pods": ""]
        if let object {
            values["workload.image"] = object["spec", "template", "spec", "containers"]?.array?.first?["image"]?.string
            let set = StatefulSet(object)
            values["workload.claim"] = set.volumeClaimTemplateNames.first.map { "\($0)-\(workload.name)-0" } ?? set.claimNames.first
        }
        return values
    }

    // MARK: - Phases

    func runPhase(_ phase: Blueprint.Phase, action: String, blueprint: String, workload: WorkloadRef?,
                  values: inout [String: String], inputs: [String: Node], outcome: inout Outcome,
                  progress: @Sendable (String) -> Void, point: PointSignal? = nil) async throws {
        let start = ContinuousClock.now
        var record = PhaseRecord(blueprint: blueprint, action: action, phase: phase.name, workload: workload?.description,
                                 result: "succeeded", seconds: 0)
        let label = "\(blueprint == "hooks" ? "hook" : "blueprint \(blueprint)") \(action)/\(phase.name)"
            + (workload.map { " for \($0)" } ?? "")
        progress("\(label): \(phase.step.summary)")
        // Failures inside a phase say what went wrong; where (blueprint, action, phase, pod) is added once, below.
        func fail(_ message: String, cause: (any Error & Sendable)? = nil) -> ProtectionError {
            ProtectionError(.phaseFailed, message, cause: cause)
        }
        func located(_ message: String) -> String {
            "\(label) failed\(record.pod.map { " in pod \($0)" } ?? ""): \(message)"
        }
        do {
            switch phase.step {
            case .exec(let target, let all, let container, let command):
                let rendered = try command.map { try BlueprintTemplate.render($0, values) }
                var probe = phase.podWhere
                if let original = probe { probe!.command = try original.command.map { try BlueprintTemplate.render($0, values) } }
                let pods = try await runningPods(target, workload: workload, all: all, container: container, probe: probe,
                                                 timeout: phase.timeout, progress: progress)
                var outputs: [String] = []
                for pod in pods {
                    record.pod = pod.name
                    if let container, !Pod(pod).containerNames.contains(container) {
                        throw fail("the pod has no container \(container) (it has: \(Pod(pod).containerNames.joined(separator: ", ")))")
                    }
                    if let session = phase.session {
                        let held = try await HeldSession.begin(phase, session: session, runner: self, pod: pod.name, container: container,
                                                               command: rendered, record: record)
                        outcome.sessions.append(held)
                        outputs.append(held.readyOutput)
                        continue
                    }
                    let result = try await exec(phase, pod: pod.name, container: container, command: rendered,
                                                input: phase.input.flatMap { inputs[$0] }, record: &record,
                                                outcome: &outcome, point: point, fail: fail)
                    outputs.append(result)
                }
                values["phases.\(phase.name).output"] = outputs.joined(separator: "\n")
            case .task(let image, let command, let env, let volumes):
                let output = try await task(phase, image: try BlueprintTemplate.render(image, values), command: try command.map { try BlueprintTemplate.render($0, values) },
                                            env: env, volumes: try volumes.map { Blueprint.TaskVolume(claim: try BlueprintTemplate.render($0.claim, values), mountPath: $0.mountPath) },
                                            input: phase.input.flatMap { inputs[$0] }, values: values, record: &record, outcome: &outcome, fail: fail)
                values["phases.\(phase.name).output"] = output
            case .scale(let target, let replicasText, let wait):
                let ref = try resolve(target, workload: workload)
                guard let replicas = Int(try BlueprintTemplate.render(replicasText, values)), replicas >= 0 else {
                    throw fail("replicas '\(replicasText)' is not a count")
                }
                let control = WorkloadControl(client: client, namespace: namespace)
                let current = Int(try await control.get(ref)["spec", "replicas"]?.int ?? 1)
                // At zero the workload remembers its count, so that the next backup scales it back should this
                // one be killed before its deferred phases run (`ApplicationBackup.recoverQuiesced`).
                try await control.scale(ref, to: replicas, remember: replicas == 0 ? (current > 0 ? current : nil) : nil,
                                        annotation: replicas == 0 && current == 0 ? nil : ApplicationBackup.quiescedAnnotation)
                if wait {
                    try await control.wait(ref, replicas == 0 ? .stopped : .ready, timeout: .seconds(phase.timeout))
                }
            case .wait(let target, let condition):
                let ref = try resolve(target, workload: workload)
                try await WorkloadControl(client: client, namespace: namespace)
                    .wait(ref, condition == .ready ? .ready : .stopped, timeout: .seconds(phase.timeout))
            }
        } catch let error as ProtectionError where error.code == .phaseFailed {
            record.result = phase.onError == .continue ? "ignored" : "failed"
            record.message = located(error.message)
            record.seconds = seconds(since: start)
            outcome.records.append(record)
            throw ProtectionError(.phaseFailed, record.message!, cause: error)
        } catch let error as KubeError {
            record.result = phase.onError == .continue ? "ignored" : "failed"
            record.message = located(Self.describe(error, phase: phase))
            record.seconds = seconds(since: start)
            outcome.records.append(record)
            throw ProtectionError(.phaseFailed, record.message!, cause: error)
        }
        record.seconds = seconds(since: start)
        outcome.records.append(record)
        if phase.point != nil { point?.fire() }
    }

    static func describe(_ error: KubeError, phase: Blueprint.Phase) -> String {
        switch error.code {
        case .timeout: "did not finish within \(Self.period(phase.timeout)) (timeout); the command may still run in its container"
        case .forbidden: "permission denied: \(error.message)"
        case .notFound: "not found: \(error.message)"
        default: error.message
        }
    }

    static func period(_ seconds: TimeInterval) -> String {
        seconds >= 3600 && seconds.truncatingRemainder(dividingBy: 3600) == 0 ? "\(Int(seconds / 3600))h"
            : seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(seconds / 60))m" : "\(Int(seconds))s"
    }

    func seconds(since start: ContinuousClock.Instant) -> Double {
        ((ContinuousClock.now - start).seconds * 10).rounded() / 10
    }

    func resolve(_ target: Blueprint.PodTarget, workload: WorkloadRef?) throws -> WorkloadRef {
        switch target {
        case .boundWorkload:
            guard let workload else { throw ProtectionError(.phaseFailed, "no workload is bound to this phase") }
            return workload
        case .workload(let kind, let name): return WorkloadRef(kind: kind, name: name)
        case .selector(let selector):
            throw ProtectionError(.phaseFailed, "scale and wait name a workload, not a selector (\(selector))")
        }
    }

    /// The running pods a target selects: all of them, or the first ready one. A workload may be between
    /// pods (restarting, or its status not yet reported by the kubelet): they are waited for, up to
    /// `podWait` (or the phase's timeout when shorter).
    ///
    /// With a `probe`, the pods are those in which it prints the expected output (asked again until the
    /// deadline: a standby may still be starting); none by then fails, or, with `otherwise: any`, any pod is
    /// taken.
    func runningPods(_ target: Blueprint.PodTarget, workload: WorkloadRef?, all: Bool, container: String? = nil,
                     probe: Blueprint.PodProbe? = nil, timeout: TimeInterval,
                     progress: @Sendable (String) -> Void = { _ in }) async throws -> [KubeObject] {
        let control = WorkloadControl(client: client, namespace: namespace)
        let deadline = ContinuousClock.now + .seconds(min(timeout, podWait))
        var answers: [String: String] = [:]
        while true {
            let pods: [KubeObject]
            let what: String
            switch target {
            case .selector(let selector):
                pods = try await control.pods(selector: selector)
                what = "pod selected by \(selector)"
            default:
                let ref = try resolve(target, workload: workload)
                pods = try await control.pods(of: try await control.get(ref))
                what = "pod of \(ref)"
            }
            var running = pods.filter { Pod($0).phase == "Running" && $0.deletionTimestamp == nil }.sorted { $0.name < $1.name }
            if let probe, !running.isEmpty {
                var chosen: [KubeObject] = []
                for pod in running where container == nil || Pod(pod).containerNames.contains(container!) {
                    let answer: String
                    do {
                        let result = try await client.exec(pod: pod.name, namespace: namespace, container: container, command: probe.command,
                                                           timeout: .seconds(30))
                        answer = result.exitCode == 0 ? result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                                                      : "exit status \(result.exitCode)"
                    } catch let error as KubeError {
                        answer = error.message
                    }
                    if answer != probe.stdout {
                        // What it printed goes into an error message: never the container's Secrets.
                        answers[pod.name] = String(Self.redact(answer, try await secretValues(of: pod.name, container: container)).prefix(200))
                    }
                    if answer == probe.stdout { chosen.append(pod) }
                }
                if !chosen.isEmpty {
                    progress("  \(all ? "pods" : "pod") \(chosen.map(\.name).joined(separator: ", ")) answered \(probe.stdout) to \(probe.command.last ?? "")")
                    running = chosen
                } else if probe.otherwiseAny {
                    progress("  no pod answered \(probe.stdout) to \(probe.command.last ?? ""): taking any pod (otherwise: any)")
                } else {
                    running = []
                }
            }
            if all, !running.isEmpty { return running }
            if !all, let pod = running.first(where: { Pod($0).isReady }) ?? running.first { return [pod] }
            guard ContinuousClock.now < deadline else {
                if probe != nil, !answers.isEmpty {
                    throw ProtectionError(.phaseFailed, "no \(what) answers '\(probe!.stdout)' to \(probe!.command.joined(separator: " ")) (waited "
                                          + "\(Self.period(min(timeout, podWait)))); answers: "
                                          + answers.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; "))
                }
                throw ProtectionError(.phaseFailed, "no running \(what) in namespace \(namespace) (waited \(Self.period(min(timeout, podWait))))")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Runs a command in a pod: stdout streamed into an artifact or kept as text (at most 64 KiB), stderr's
    /// last lines kept for the record; an input artifact streamed to stdin.
    /// The values of the Secrets a pod's container (or every container) takes its environment from, read as
    /// the requester (what they may not read cannot leak through them): redacted from recorded output.
    func secretValues(of pod: String, container: String?) async throws -> [String] {
        guard let object = try? await client.get(Pod.resource, pod, namespace: namespace) else { return [] }
        var references: [(name: String, key: String?)] = []
        for spec in object["spec", "containers"]?.array ?? [] where container == nil || spec["name"]?.string == container {
            for variable in spec["env"]?.array ?? [] {
                if let ref = variable["valueFrom", "secretKeyRef"], let name = ref["name"]?.string {
                    references.append((name, ref["key"]?.string))
                }
            }
            for source in spec["envFrom"]?.array ?? [] {
                if let name = source["secretRef", "name"]?.string { references.append((name, nil)) }
            }
        }
        var values: [String] = []
        for (name, key) in references {
            guard let secret = try? await client.get(Secret.resource, name, namespace: namespace) else { continue }
            let data = secret["data"]?.object ?? [:]
            for (k, encoded) in data where key == nil || k == key {
                if let text = encoded.string.flatMap({ Data(base64Encoded: $0) }).map({ String(decoding: $0, as: UTF8.self) }),
                   text.count >= 4 { values.append(text) }
            }
        }
        return values.sorted { $0.count > $1.count }
    }

    func exec(_ phase: Blueprint.Phase, pod: String, container: String?, command: [String], input: Node?,
              record: inout PhaseRecord, outcome: inout Outcome, point: PointSignal? = nil,
              fail: (String, (any Error & Sendable)?) -> ProtectionError) async throws -> String {
        if phase.input != nil && input == nil {
            throw fail("the restore point has no artifact \(phase.input!) for this workload", nil)
        }
        var argv = command
        if let input {
            // Kubernetes before 1.29 (exec protocol v4) cannot close a command's stdin: the command reads
            // exactly the artifact's length and then sees its end.
            argv = ["sh", "-c", "head -c \(input.size) | \"$0\" \"$@\""] + command
        }
        let repository = self.repository
        let artifact = phase.artifact
        let stderrLines = self.stderrLines
        let result: ExecRun
        do {
        result = try await client.exec(pod: pod, namespace: namespace, container: container, command: argv,
                                                    stdin: input != nil, timeout: .seconds(phase.timeout)) { session in
            let tail = StderrTail(lines: stderrLines)
            if case .stderr(let marker)? = phase.point, let point { tail.watch(for: marker, point) }
            var text: [UInt8] = []
            var stored: StreamContent.Stored?
            if let input, let repository {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await StreamContent.read(input, from: repository) { data in try await session.write(data) }
                        try await session.closeStdin()
                    }
                    while let piece = try await session.next() {
                        switch piece {
                        case .stdout(let bytes): if text.count < 64 << 10 { text += bytes.prefix((64 << 10) - text.count) }
                        case .stderr(let bytes): tail.add(bytes)
                        }
                    }
                    // The command ended: stdin it did not read is not needed.
                    group.cancelAll()
                    while let _ = try? await group.next() {}
                }
            } else if artifact, let repository {
                stored = try await StreamContent.store(in: repository, encoding: phase.streamEncoding) {
                    while let piece = try await session.next() {
                        switch piece {
                        case .stdout(let bytes): return bytes
                        case .stderr(let bytes): tail.add(bytes)
                        }
                    }
                    return nil
                }
            } else {
                while let piece = try await session.next() {
                    switch piece {
                    case .stdout(let bytes): if text.count < 64 << 10 { text += bytes.prefix((64 << 10) - text.count) }
                    case .stderr(let bytes): tail.add(bytes)
                    }
                }
            }
            return ExecRun(exitCode: try await session.exitCode(), text: text, stderr: tail.text, stored: stored)
        }
        } catch let error as SnapshotError where error.code == .invalidArgument && phase.outputEncoding != .identity {
            throw fail("its artifact: \(error.message)", error)
        }
        record.exitCode = result.exitCode
        if let input { record.artifactBytes = input.size }
        guard result.exitCode == 0 else {
            // The container's own Secrets may show up in what it printed: never in a status or a log.
            let stderr = Self.redact(result.stderr, try await secretValues(of: pod, container: container))
            throw fail("exited with status \(result.exitCode)" + (stderr.isEmpty ? "" : "; stderr ends: \(stderr)"), nil)
        }
        if let stored = result.stored {
            record.artifactBytes = stored.size
            record.artifactStreamedBytes = stored.compressedSize
            outcome.artifacts[phase.name] = StreamContent.fileNode(named: phase.name, stored)
        }
        return String(decoding: result.text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct ExecRun: Sendable {
        var exitCode: Int32
        var text: [UInt8]
        var stderr: String
        var stored: StreamContent.Stored?
    }

    /// A pod of its own for the phase, run to completion; its log is its output. Secret values reach the
    /// pod by reference; they are read here only to be redacted from what is recorded.
    ///
    /// With `volumes` (beforeStart), the claims are mounted. With an `input`, the pod waits (`sleep`) and the
    /// command runs in it as an exec that reads the artifact on stdin; the pod is deleted afterwards.
    func task(_ phase: Blueprint.Phase, image: String, command: [String], env: [Blueprint.EnvVar], volumes: [Blueprint.TaskVolume] = [],
              input: Node? = nil, values: [String: String], record: inout PhaseRecord, outcome: inout Outcome,
              fail: (String, (any Error & Sendable)?) -> ProtectionError) async throws -> String {
        if phase.input != nil && input == nil {
            throw fail("the restore point has no artifact \(phase.input!) for this workload", nil)
        }
        var secrets: [String] = []
        var envJSON: [JSONValue] = []
        for variable in env {
            if let ref = variable.secret {
                let secret: KubeObject
                do {
                    secret = try await client.get(Secret.resource, ref.name, namespace: namespace)
                } catch let error as KubeError where error.code == .notFound {
                    throw fail("Secret \(ref.name) (for \(variable.name)) does not exist in namespace \(namespace)", error)
                }
                guard let encoded = secret["data", ref.key]?.string else {
                    throw fail("Secret \(ref.name) has no key \(ref.key) (for \(variable.name))", nil)
                }
                if let value = Data(base64Encoded: encoded).map({ String(decoding: $0, as: UTF8.self) }), value.count >= 4 {
                    secrets.append(value)
                }
                secrets.sort { $0.count > $1.count }
                envJSON.append(["name": .string(variable.name),
                                "valueFrom": ["secretKeyRef": ["name": .string(ref.name), "key": .string(ref.key)]]])
            } else {
                envJSON.append(["name": .string(variable.name),
                                "value": .string(try BlueprintTemplate.render(variable.value ?? "", values))])
            }
        }
        // With an input, the pod only waits; the command runs in it as an exec, stdin fed from the artifact.
        let main: [String] = input == nil ? command : ["sh", "-c", "exec sleep 86400"]
        var container: JSONValue = ["name": "task", "image": .string(image), "imagePullPolicy": "IfNotPresent",
                                    "command": .array(main.map { .string($0) }), "env": .array(envJSON)]
        var spec: JSONValue = ["restartPolicy": "Never", "automountServiceAccountToken": false]
        if !volumes.isEmpty {
            container["volumeMounts"] = .array(volumes.enumerated().map { i, v in ["name": .string("claim-\(i)"), "mountPath": .string(v.mountPath)] })
            spec["volumes"] = .array(volumes.enumerated().map { i, v in
                ["name": .string("claim-\(i)"), "persistentVolumeClaim": ["claimName": .string(v.claim)]]
            })
        }
        spec["containers"] = [container]
        let pod = KubeObject([
            "apiVersion": "v1", "kind": "Pod",
            "metadata": ["generateName": .string("cairn-task-\(phase.name.prefix(40))-"), "namespace": .string(namespace),
                         "labels": ["app.kubernetes.io/managed-by": "cairn", "cairn.dev/task": .string(phase.name)]],
            "spec": spec,
        ] as JSONValue)
        let created = try await client.create(pod, as: Pod.resource, namespace: namespace)
        record.pod = created.name
        do {
            let deadline = ContinuousClock.now + .seconds(phase.timeout)
            var current = created
            while true {
                current = try await client.get(Pod.resource, created.name, namespace: namespace)
                if let phase = Pod(current).phase, phase == "Succeeded" || phase == "Failed" { break }
                if input != nil, Pod(current).phase == "Running" {
                    let output = try await exec(phase, pod: created.name, container: "task", command: command, input: input,
                                                record: &record, outcome: &outcome, fail: fail)
                    _ = try? await client.delete(Pod.resource, created.name, namespace: namespace, options: DeleteOptions(gracePeriodSeconds: 0))
                    return output
                }
                if let waiting = current["status", "containerStatuses"]?.array?.first?["state", "waiting"],
                   let reason = waiting["reason"]?.string,
                   ["ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"].contains(reason) {
                    throw fail("the task pod cannot start: \(reason): \(Self.redact(waiting["message"]?.string ?? "", secrets))", nil)
                }
                guard ContinuousClock.now < deadline else {
                    throw fail("did not finish within \(Self.period(phase.timeout)) (timeout)", nil)
                }
                try await Task.sleep(for: .milliseconds(300))
            }
            let log = Self.redact((try? await client.log(pod: created.name, namespace: namespace)) ?? "", secrets)
            let code = current["status", "containerStatuses"]?.array?.first?["state", "terminated", "exitCode"]?.int
            record.exitCode = code.map { Int32(clamping: $0) }
            _ = try? await client.delete(Pod.resource, created.name, namespace: namespace, options: DeleteOptions(gracePeriodSeconds: 0))
            guard Pod(current).phase == "Succeeded" else {
                let lines = log.split(separator: "\n").suffix(stderrLines).joined(separator: "\n")
                throw fail("exited with status \(code.map(String.init) ?? "unknown")" + (lines.isEmpty ? "" : "; its log ends: \(lines)"), nil)
            }
            return String(log.prefix(64 << 10)).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            _ = try? await client.delete(Pod.resource, created.name, namespace: namespace, options: DeleteOptions(gracePeriodSeconds: 0))
            throw error
        }
    }

    static func redact(_ text: String, _ secrets: [String]) -> String {
        secrets.reduce(text) { $0.replacingOccurrences(of: $1, with: "[redacted]") }
    }
}

/// Says once that an action's consistent point exists (`Blueprint.Point`).
final class PointSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var callback: (@Sendable () -> Void)?

    init(_ callback: @escaping @Sendable () -> Void) { self.callback = callback }

    func fire() {
        let callback = lock.withLock { () -> (@Sendable () -> Void)? in
            defer { self.callback = nil }
            return self.callback
        }
        callback?()
    }
}

/// The last lines of a command's stderr; optionally watching for a line that contains a marker.
final class StderrTail: @unchecked Sendable {
    private var bytes: [UInt8] = []
    let lines: Int
    private var marker: [UInt8]?
    private var signal: PointSignal?
    /// The line being received, while a marker is watched for.
    private var line: [UInt8] = []

    init(lines: Int) { self.lines = lines }

    func watch(for marker: String, _ signal: PointSignal) {
        self.marker = Array(marker.utf8)
        self.signal = signal
    }

    func add(_ more: [UInt8]) {
        bytes += more
        if bytes.count > 16 << 10 { bytes.removeFirst(bytes.count - (8 << 10)) }
        guard let marker, let signal else { return }
        for byte in more {
            if byte == UInt8(ascii: "\n") {
                if line.firstRange(of: marker) != nil {
                    signal.fire()
                    self.marker = nil
                    self.signal = nil
                    line = []
                    return
                }
                line.removeAll(keepingCapacity: true)
            } else if line.count < 4096 {
                line.append(byte)
            }
        }
    }

    var text: String {
        String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
            .suffix(lines).joined(separator: "\n")
    }
}

extension Blueprint.Step {
    /// One line saying what the step does (progress, `cairn blueprint show`).
    public var summary: String {
        switch self {
        case .exec(_, let all, let container, let command):
            "exec \(command.first ?? "")\(container.map { " in container \($0)" } ?? "")\(all ? " in every pod" : "")"
        case .task(let image, let command, _, let volumes):
            "task pod \(image) running \(command.first ?? "")" + (volumes.isEmpty ? "" : " with \(volumes.map(\.claim).joined(separator: ", "))")
        case .scale(_, let replicas, _): "scale to \(replicas)"
        case .wait(_, let condition): "wait until \(condition.rawValue)"
        }
    }
}

extension Blueprint.Phase {
    /// How its artifact arrives (`outputEncoding`), as `StreamContent` stores it.
    var streamEncoding: StreamContent.Encoding { StreamContent.Encoding(rawValue: outputEncoding.rawValue) ?? .identity }
}
