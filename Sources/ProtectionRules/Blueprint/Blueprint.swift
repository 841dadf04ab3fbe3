import KubeModel
import Foundation

/// How a data service is backed up and restored consistently — a `Blueprint` resource
/// (`cairn.dev/v1alpha1`), or the hooks of a Policy, BackupAction or RestoreAction, which are phases of the
/// same shape. Read and checked once here (`init(json:)`: every mistake names its field); run by
/// `BlueprintRunner` (Protection). Reference: docs/crds.md, "Blueprint".
///
/// ```yaml
/// spec:
///   volumes: skip                 # capture | snapshot | skip: how the workload's claims' data is read
///   exclude: [pg_wal/*]           # paths under each claim left out of the capture (capture, snapshot)
///   actions:
///     backup:                     # backup | restore | delete | beforeCapture | afterCapture
///       phases:
///         - name: dump
///           exec: {container: postgres, command: [pg_dumpall, -U, postgres]}
///           output: artifact       # stdout streamed into the restore point as the artifact `dump`
///           timeout: 30m
///       deferred: []               # run whatever happened, in order (unlock, scale back)
///     restore:
///       phases:
///         - name: load
///           exec: {container: postgres, command: [psql, -U, postgres]}
///           input: dump            # the artifact streamed back on stdin
/// ```
public struct Blueprint: Sendable, Equatable {
    public enum ActionName: String, Sendable, CaseIterable, Codable {
        /// Around the backup of a workload: where database-native dumps run.
        case backup
        /// After the workload's objects are restored and its pods are ready: loads artifacts back.
        case restore
        /// When a restore point of this workload is deleted (a RestorePoint's deletion, retention, expiry —
        /// run by the controller before the data goes): removes what the backup kept outside the restore
        /// point (an external backup, a bucket's object), with the artifacts on stdin (`input`). A failed
        /// phase keeps the restore point until it succeeds (`onError: continue` does not).
        case delete
        /// Just before the volumes are read: fence (lock, flush, checkpoint).
        case beforeCapture
        /// Once the volumes were read (or failed to be): release the fence.
        case afterCapture
        /// During a restore, once the workload's volumes are written and before the workload is created:
        /// task pods with the claims mounted put files in place (a `backup_label`, WAL) before the server
        /// first starts.
        case beforeStart
    }

    public enum VolumeMode: String, Sendable, Codable {
        /// The workload's claims are read as files, as without a blueprint.
        case capture
        /// The workload's claims are read only from CSI snapshots taken inside its fence: a fence that stops
        /// commits but not the engine's own writes (MariaDB's `FLUSH TABLES WITH READ LOCK`: InnoDB flushes and
        /// purges on) is consistent only for a capture of every file at one instant. A backup whose claims
        /// cannot be snapshotted fails before any fence instead of reading them live. Restored as `capture`.
        case snapshot
        /// The workload's claims are left out of the volume capture: its artifacts hold its data, and a
        /// restore gives it empty volumes for the restore action to fill.
        case skip

        /// Whether the workload's volume data is in the restore point.
        public var readsVolumes: Bool { self != .skip }
    }

    public struct Action: Sendable, Equatable {
        public var phases: [Phase]
        /// Run after `phases` whatever happened (even when a phase failed), in order; their own failures are
        /// reported but do not stop the next one.
        public var deferred: [Phase]

        public init(phases: [Phase], deferred: [Phase] = []) {
            self.phases = phases
            self.deferred = deferred
        }
    }

    public enum OnError: String, Sendable, Codable {
        /// The action fails (deferred phases still run).
        case fail
        /// Recorded, and the next phase runs.
        case `continue`
    }

    public enum OutputEncoding: String, Sendable, Equatable {
        case identity, zstd, auto
    }

    public struct Phase: Sendable, Equatable {
        public var name: String
        public var step: Step
        public var timeout: TimeInterval
        public var onError: OnError
        /// The phase's stdout is stored in the restore point as an artifact named after the phase.
        public var artifact: Bool
        /// The artifact (a backup phase's name) streamed to this phase's stdin.
        public var input: String?
        /// In a `backup` action: where the backup's consistent point exists (a dump's transaction began), so
        /// that a consistency group's fences can be released while the rest of the dump streams.
        public var point: Point?
        /// An exec's pods are those of its target in which this probe prints the expected output
        /// (`exec.where`): the standby, found by asking the database, not by the pod's name.
        public var podWhere: PodProbe?
        /// An exec held open across the volume capture (`exec.session`, beforeCapture only).
        public var session: Session?
        /// How the command writes its artifact (`outputEncoding`): `identity`; `zstd` — compressed, so that
        /// fewer bytes cross the API server, and stored decompressed, so that it deduplicates as plain output;
        /// `auto` — zstd when it begins with a zstd frame, else as it is.
        public var outputEncoding = OutputEncoding.identity
    }

    /// A command kept running while the volumes are read — a database session that holds a lock or a
    /// backup mode only as long as it lives. Cairn writes `start` to its stdin; the phase is done once a
    /// line of its stdout contains `ready`. When the fences are released, Cairn writes `end`, and the command
    /// must exit (psql `\q`, `quit`) within the phase's timeout. Its stdout after the `ready` line is the
    /// phase's output (`output: artifact`: stored, such as the `backup_label` pg_backup_stop returns). A
    /// session that ends before it is released fails the backup: its fence did not hold.
    public struct Session: Sendable, Equatable {
        public var start: String
        public var ready: String
        public var end: String
    }

    /// A claim a task pod mounts (`task.volumes`, beforeStart): the claim's name is a template.
    public struct TaskVolume: Sendable, Equatable {
        public var claim: String
        public var mountPath: String

        public init(claim: String, mountPath: String) {
            self.claim = claim
            self.mountPath = mountPath
        }
    }

    /// A command run in each candidate pod; a pod is chosen when its stdout, trimmed, is `stdout`.
    public struct PodProbe: Sendable, Equatable {
        public var command: [String]
        public var stdout: String
        /// When no pod answers so: fail the phase (default), or run in any pod of the target.
        public var otherwiseAny: Bool
    }

    /// When a backup phase's consistent point exists.
    public enum Point: Sendable, Equatable {
        /// When the phase ends (`point: {end: true}`: `BGSAVE` forked).
        case end
        /// When a line of the command's stderr contains the text (`point: {stderr: "…"}`: a dump's verbose
        /// line that comes once its snapshot is taken).
        case stderr(String)
    }

    /// Which pods an `exec` runs in.
    public enum PodTarget: Sendable, Equatable {
        /// The pods of the workload the blueprint is bound to (hooks: not available).
        case boundWorkload
        /// The pods of a workload, `Kind/name` (Deployment or StatefulSet).
        case workload(kind: String, name: String)
        /// The pods a label selector selects (`app=db,tier in (a,b)`).
        case selector(String)
    }

    public enum Step: Sendable, Equatable {
        /// A command in running pods; `all`: every selected pod, else the first ready one.
        case exec(target: PodTarget, all: Bool, container: String?, command: [String])
        /// A pod of its own, run to completion in the application's namespace (with claims mounted, in
        /// `beforeStart`).
        case task(image: String, command: [String], env: [EnvVar], volumes: [TaskVolume])
        /// Scales a workload; `replicas` is a template (`0`, `{{ workload.replicas }}`).
        case scale(target: PodTarget, replicas: String, wait: Bool)
        /// Waits for a workload to be ready (every replica) or stopped (no pod left).
        case wait(target: PodTarget, condition: WaitCondition)
    }

    public enum WaitCondition: String, Sendable, Equatable {
        case ready
        case stopped
    }

    /// An environment variable of a task pod: a (templated) value, or a key of a Secret by reference — the
    /// value never passes through Cairn.
    public struct EnvVar: Sendable, Equatable {
        public var name: String
        public var value: String?
        public var secret: (name: String, key: String)?

        public static func == (a: EnvVar, b: EnvVar) -> Bool {
            a.name == b.name && a.value == b.value && a.secret?.name == b.secret?.name && a.secret?.key == b.secret?.key
        }
    }

    public var name: String
    public var description: String?
    public var volumes: VolumeMode
    /// Paths under each of the workload's claims the volume capture leaves out (`PathExclusion`, Snapshot):
    /// what the blueprint keeps another way or a restore does not need (PostgreSQL's `pg_wal/*`).
    public var exclude: [String] = []
    public var actions: [ActionName: Action]
    /// The document it was read from (`spec` only): stored in restore points, so that a restore runs the
    /// blueprint the backup ran.
    public var source: JSONValue

    public init(name: String, volumes: VolumeMode = .capture, actions: [ActionName: Action]) {
        self.name = name
        self.volumes = volumes
        self.actions = actions
        source = .null
    }

    /// The actions it has, in their order (`backup`, `restore`, …).
    public var actionNames: [String] { ActionName.allCases.filter { actions[$0] != nil }.map(\.rawValue) }

    /// The annotation on a Deployment or StatefulSet that names its blueprint.
    public static let annotation = "cairn.dev/blueprint"
    public static let defaultTimeout: TimeInterval = 600

    /// Names of phases, artifacts and blueprints: DNS labels (they become paths in the restore point).
    static func validName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 63 && text.first!.isLetter && text.last != "-"
            && text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
    }
}

// MARK: - Reading and checking

extension Blueprint {
    /// A `Blueprint` resource (or its `spec` alone, with `name`). Every mistake is a
    /// `ProtectionError(.invalidBlueprint)` whose `field` names where it is (`spec.actions.backup.phases[0]`).
    public init(json document: JSONValue, name fallbackName: String? = nil) throws(ProtectionError) {
        let isResource = document["kind"] != nil || document["spec"] != nil
        if isResource {
            if let kind = document["kind"]?.string, kind != "Blueprint" {
                throw ProtectionError(.invalidBlueprint, "kind is \(kind), expected Blueprint", field: "kind")
            }
            if let version = document["apiVersion"]?.string, version != "cairn.dev/v1alpha1" {
                throw ProtectionError(.invalidBlueprint, "apiVersion is \(version), expected cairn.dev/v1alpha1", field: "apiVersion")
            }
        }
        let spec = isResource ? (document["spec"] ?? .null) : document
        let prefix = isResource ? "spec" : ""
        func at(_ field: String) -> String { prefix.isEmpty ? field : prefix + "." + field }
        guard let name = document["metadata", "name"]?.string ?? fallbackName else {
            throw ProtectionError(.invalidBlueprint, "metadata.name is required", field: "metadata")
        }
        guard spec.object != nil else {
            throw ProtectionError(.invalidBlueprint, "spec must be a mapping with actions", field: isResource ? "spec" : nil)
        }
        try Self.known(spec, ["description", "volumes", "exclude", "actions"], at: prefix)
        self.name = name
        source = spec
        description = spec["description"]?.string
        let volumesText = spec["volumes"]?.string ?? "capture"
        guard let volumes = VolumeMode(rawValue: volumesText) else {
            throw ProtectionError(.invalidBlueprint, "'\(volumesText)' must be capture, snapshot or skip", field: at("volumes"))
        }
        self.volumes = volumes
        if let list = spec["exclude"] {
            guard let items = list.array else {
                throw ProtectionError(.invalidBlueprint, "must be a list of path patterns", field: at("exclude"))
            }
            for (i, item) in items.enumerated() {
                guard let pattern = item.string else {
                    throw ProtectionError(.invalidBlueprint, "must be a path pattern (text)", field: at("exclude[\(i)]"))
                }
                let body = pattern.hasPrefix("/") ? String(pattern.dropFirst()) : pattern
                if body.isEmpty || body.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                    throw ProtectionError(.invalidBlueprint, "'\(pattern)' must be a path under the claim's root without empty, '.' or '..' components",
                                          field: at("exclude[\(i)]"))
                }
                exclude.append(pattern)
            }
            if !exclude.isEmpty && volumes == .skip {
                throw ProtectionError(.invalidBlueprint, "volumes: skip copies no files, so nothing can be excluded", field: at("exclude"))
            }
        }
        guard let actionsJSON = spec["actions"]?.object, !actionsJSON.isEmpty else {
            throw ProtectionError(.invalidBlueprint, "at least one action is required (backup, restore, delete, beforeCapture, afterCapture, beforeStart)",
                                  field: at("actions"))
        }
        actions = [:]
        for key in actionsJSON.keys.sorted() {
            let field = at("actions." + key)
            guard let action = ActionName(rawValue: key) else {
                throw ProtectionError(.invalidBlueprint, "unknown action '\(key)': expected backup, restore, delete, beforeCapture, afterCapture or beforeStart",
                                      field: field)
            }
            actions[action] = try Self.action(actionsJSON[key]!, field: field, hooks: false)
        }
        try checkReferences(at: at("actions"))
    }

    /// Hooks of a Policy, BackupAction or RestoreAction: `{beforeCapture: [phase…], afterCapture: […]}` or
    /// `{afterRestore: […]}`: phases without a bound workload (their `exec` names its pods).
    public static func hooks(_ json: JSONValue, field: String, allowed: [String]) throws(ProtectionError) -> [String: [Phase]] {
        guard let object = json.object else {
            throw ProtectionError(.invalidBlueprint, "hooks must be a mapping of \(allowed.joined(separator: ", ")) to lists of phases", field: field)
        }
        var result: [String: [Phase]] = [:]
        for key in object.keys.sorted() {
            guard allowed.contains(key) else {
                throw ProtectionError(.invalidBlueprint, "unknown hook '\(key)': expected \(allowed.joined(separator: " or "))", field: "\(field).\(key)")
            }
            guard let list = object[key]!.array else {
                throw ProtectionError(.invalidBlueprint, "must be a list of phases", field: "\(field).\(key)")
            }
            var phases: [Phase] = []
            for (i, entry) in list.enumerated() {
                let phase = try Self.phase(entry, field: "\(field).\(key)[\(i)]", hooks: true)
                if phase.point != nil {
                    throw ProtectionError(.invalidBlueprint, "only the phases of a blueprint's backup action mark a consistent point",
                                          field: "\(field).\(key)[\(i)].point")
                }
                if phase.session != nil && key != "beforeCapture" {
                    throw ProtectionError(.invalidBlueprint, "only beforeCapture phases hold a session across the capture",
                                          field: "\(field).\(key)[\(i)].exec.session")
                }
                if phase.artifact || phase.input != nil {
                    throw ProtectionError(.invalidBlueprint, "hooks neither store nor read artifacts", field: "\(field).\(key)[\(i)]")
                }
                if case .task(_, _, _, let volumes) = phase.step, !volumes.isEmpty {
                    throw ProtectionError(.invalidBlueprint, "only beforeStart tasks mount claims", field: "\(field).\(key)[\(i)].task.volumes")
                }
                if phases.contains(where: { $0.name == phase.name }) {
                    throw ProtectionError(.invalidBlueprint, "a second phase named \(phase.name)", field: "\(field).\(key)[\(i)].name")
                }
                phases.append(phase)
            }
            result[key] = phases
        }
        return result
    }

    static func known(_ json: JSONValue, _ fields: [String], at path: String) throws(ProtectionError) {
        for key in (json.object ?? [:]).keys.sorted() where !fields.contains(key) {
            throw ProtectionError(.invalidBlueprint, "unknown field '\(key)' (expected \(fields.joined(separator: ", ")))",
                                  field: path.isEmpty ? key : path + "." + key)
        }
    }

    static func action(_ json: JSONValue, field: String, hooks: Bool) throws(ProtectionError) -> Action {
        guard json.object != nil else {
            throw ProtectionError(.invalidBlueprint, "an action is a mapping with phases (and deferred)", field: field)
        }
        try known(json, ["phases", "deferred"], at: field)
        var names: Set<String> = []
        func list(_ key: String) throws(ProtectionError) -> [Phase] {
            guard let value = json[key] else { return [] }
            guard let array = value.array else {
                throw ProtectionError(.invalidBlueprint, "must be a list of phases", field: "\(field).\(key)")
            }
            var phases: [Phase] = []
            for (i, entry) in array.enumerated() {
                let phase = try phase(entry, field: "\(field).\(key)[\(i)]", hooks: hooks)
                guard names.insert(phase.name).inserted else {
                    throw ProtectionError(.invalidBlueprint, "a second phase named \(phase.name) in this action", field: "\(field).\(key)[\(i)].name")
                }
                phases.append(phase)
            }
            return phases
        }
        let action = Action(phases: try list("phases"), deferred: try list("deferred"))
        guard !action.phases.isEmpty || !action.deferred.isEmpty else {
            throw ProtectionError(.invalidBlueprint, "an action needs at least one phase", field: "\(field).phases")
        }
        return action
    }

    static func phase(_ json: JSONValue, field: String, hooks: Bool) throws(ProtectionError) -> Phase {
        guard json.object != nil else { throw ProtectionError(.invalidBlueprint, "a phase is a mapping", field: field) }
        try known(json, ["name", "exec", "task", "scale", "wait", "timeout", "onError", "output", "outputEncoding", "input", "point"], at: field)
        guard let name = json["name"]?.string else {
            throw ProtectionError(.invalidBlueprint, "every phase needs a name", field: "\(field).name")
        }
        guard validName(name) else {
            throw ProtectionError(.invalidBlueprint, "'\(name)' is not a valid phase name (lower-case letters, digits and '-', starting with a letter, at most 63)",
                                  field: "\(field).name")
        }
        let kinds = ["exec", "task", "scale", "wait"].filter { json[$0] != nil }
        guard kinds.count == 1 else {
            throw ProtectionError(.invalidBlueprint, kinds.isEmpty ? "a phase needs one of exec, task, scale or wait"
                                                                   : "a phase does one thing: \(kinds.joined(separator: " and ")) given",
                                  field: field)
        }
        let kind = kinds[0]
        let body = json[kind]!
        let bodyField = "\(field).\(kind)"
        guard body.object != nil else { throw ProtectionError(.invalidBlueprint, "must be a mapping", field: bodyField) }
        let step: Step
        var podWhere: PodProbe?
        var session: Session?
        switch kind {
        case "exec":
            try known(body, ["container", "command", "pods", "workload", "selector", "where", "session"], at: bodyField)
            let target = try target(body, field: bodyField, hooks: hooks)
            let podsText = body["pods"]?.string ?? "one"
            guard podsText == "one" || podsText == "all" else {
                throw ProtectionError(.invalidBlueprint, "'\(podsText)' must be one (the first ready pod) or all", field: "\(bodyField).pods")
            }
            step = .exec(target: target, all: podsText == "all", container: body["container"]?.string,
                         command: try command(body, field: bodyField))
            if let probe = body["where"] {
                let probeField = "\(bodyField).where"
                try known(probe, ["command", "stdout", "otherwise"], at: probeField)
                guard let expected = probe["stdout"]?.string else {
                    throw ProtectionError(.invalidBlueprint, "stdout: the output (trimmed) that chooses a pod, such as t", field: "\(probeField).stdout")
                }
                let otherwise = probe["otherwise"]?.string ?? "fail"
                guard otherwise == "fail" || otherwise == "any" else {
                    throw ProtectionError(.invalidBlueprint, "'\(otherwise)' must be fail (no pod answers: the phase fails) or any (then any pod)",
                                          field: "\(probeField).otherwise")
                }
                podWhere = PodProbe(command: try command(probe, field: probeField), stdout: expected, otherwiseAny: otherwise == "any")
            }
            if let body = body["session"] {
                let sessionField = "\(bodyField).session"
                try known(body, ["start", "ready", "end"], at: sessionField)
                guard let start = body["start"]?.string, let ready = body["ready"]?.string, !ready.isEmpty,
                      let end = body["end"]?.string, !end.isEmpty else {
                    throw ProtectionError(.invalidBlueprint, "a session needs start (written to stdin), ready (a line of stdout that says the fence holds) "
                                          + "and end (written at the release; the command must then exit)", field: sessionField)
                }
                guard podsText == "one" else {
                    throw ProtectionError(.invalidBlueprint, "a session runs in one pod (pods: one)", field: "\(bodyField).pods")
                }
                session = Session(start: start, ready: ready, end: end)
            }
        case "task":
            try known(body, ["image", "command", "env", "volumes"], at: bodyField)
            guard let image = body["image"]?.string, !image.isEmpty else {
                throw ProtectionError(.invalidBlueprint, "a task needs an image", field: "\(bodyField).image")
            }
            var env: [EnvVar] = []
            for (i, entry) in (body["env"]?.array ?? []).enumerated() {
                let envField = "\(bodyField).env[\(i)]"
                try known(entry, ["name", "value", "secretKeyRef"], at: envField)
                guard let envName = entry["name"]?.string, !envName.isEmpty else {
                    throw ProtectionError(.invalidBlueprint, "an environment variable needs a name", field: envField)
                }
                if let ref = entry["secretKeyRef"] {
                    guard let secret = ref["name"]?.string, let key = ref["key"]?.string, entry["value"] == nil else {
                        throw ProtectionError(.invalidBlueprint, "secretKeyRef needs the Secret's name and key (and no value beside it)",
                                              field: "\(envField).secretKeyRef")
                    }
                    env.append(EnvVar(name: envName, value: nil, secret: (secret, key)))
                } else {
                    guard let value = entry["value"]?.string else {
                        throw ProtectionError(.invalidBlueprint, "give a value (a string) or a secretKeyRef", field: envField)
                    }
                    env.append(EnvVar(name: envName, value: value, secret: nil))
                }
            }
            var volumes: [TaskVolume] = []
            for (i, entry) in (body["volumes"]?.array ?? []).enumerated() {
                let volumeField = "\(bodyField).volumes[\(i)]"
                try known(entry, ["claim", "mountPath"], at: volumeField)
                guard let claim = entry["claim"]?.string, !claim.isEmpty, let path = entry["mountPath"]?.string, path.hasPrefix("/") else {
                    throw ProtectionError(.invalidBlueprint, "a volume names a claim (a template such as data-{{ workload.name }}-0) and an absolute mountPath",
                                          field: volumeField)
                }
                volumes.append(TaskVolume(claim: claim, mountPath: path))
            }
            step = .task(image: image, command: try command(body, field: bodyField), env: env, volumes: volumes)
        case "scale":
            try known(body, ["workload", "replicas", "wait"], at: bodyField)
            let replicas: String
            switch body["replicas"] {
            case .int(let n)? where n >= 0: replicas = String(n)
            case .string(let text)? where text.contains("{{") || (Int(text) ?? -1) >= 0: replicas = text
            default:
                throw ProtectionError(.invalidBlueprint, "replicas must be a count of 0 or more, or a template such as {{ workload.replicas }}",
                                      field: "\(bodyField).replicas")
            }
            step = .scale(target: try target(body, field: bodyField, hooks: hooks), replicas: replicas,
                          wait: body["wait"]?.bool ?? true)
        default:
            try known(body, ["workload", "for"], at: bodyField)
            let text = body["for"]?.string ?? ""
            guard let condition = WaitCondition(rawValue: text) else {
                throw ProtectionError(.invalidBlueprint, "wait needs for: ready (every replica ready) or stopped (no pod left)",
                                      field: "\(bodyField).for")
            }
            step = .wait(target: try target(body, field: bodyField, hooks: hooks), condition: condition)
        }
        var timeout = defaultTimeout
        if let text = json["timeout"]?.string {
            guard let seconds = Period.seconds(text), seconds > 0 else {
                throw ProtectionError(.invalidBlueprint, "'\(text)' is not a period such as 30s, 10m or 1h", field: "\(field).timeout")
            }
            timeout = seconds
        } else if json["timeout"] != nil {
            throw ProtectionError(.invalidBlueprint, "a period such as 30s, 10m or 1h (a string)", field: "\(field).timeout")
        }
        let onErrorText = json["onError"]?.string ?? "fail"
        guard let onError = OnError(rawValue: onErrorText) else {
            throw ProtectionError(.invalidBlueprint, "'\(onErrorText)' must be fail or continue", field: "\(field).onError")
        }
        let outputText = json["output"]?.string ?? "text"
        guard outputText == "text" || outputText == "artifact" else {
            throw ProtectionError(.invalidBlueprint, "'\(outputText)' must be text (kept for later phases' templates) or artifact (stored in the restore point)",
                                  field: "\(field).output")
        }
        let artifact = outputText == "artifact"
        if artifact || json["input"] != nil {
            switch step {
            case .exec(_, false, _, _): break
            case .task where !artifact: break
            default:
                throw ProtectionError(.invalidBlueprint, artifact ? "artifacts are streamed from an exec in one pod (pods: one)"
                                                                  : "inputs are streamed to an exec in one pod (pods: one) or a task",
                                      field: "\(field).\(artifact ? "output" : "input")")
            }
        }
        if session != nil, json["input"] != nil {
            throw ProtectionError(.invalidBlueprint, "a session's stdin is its start and end", field: "\(field).input")
        }
        var outputEncoding = OutputEncoding.identity
        if let text = json["outputEncoding"] {
            guard let encoding = text.string.flatMap(OutputEncoding.init(rawValue:)) else {
                throw ProtectionError(.invalidBlueprint, "must be zstd (the command compresses its stdout), auto (zstd when it begins with a zstd frame) or identity",
                                      field: "\(field).outputEncoding")
            }
            guard artifact else {
                throw ProtectionError(.invalidBlueprint, "only an artifact (output: artifact) is decompressed", field: "\(field).outputEncoding")
            }
            outputEncoding = encoding
        }
        var point: Point?
        if let body = json["point"] {
            try known(body, ["end", "stderr"], at: "\(field).point")
            switch (body["end"], body["stderr"]) {
            case (.bool(true)?, nil): point = .end
            case (nil, .string(let text)?) where !text.isEmpty:
                guard case .exec = step else {
                    throw ProtectionError(.invalidBlueprint, "only an exec's stderr can mark the point", field: "\(field).point.stderr")
                }
                point = .stderr(text)
            default:
                throw ProtectionError(.invalidBlueprint, "give end: true (the point exists when the phase ends) or stderr: TEXT (when a line of its stderr contains TEXT)",
                                      field: "\(field).point")
            }
        }
        return Phase(name: name, step: step, timeout: timeout, onError: onError, artifact: artifact, input: json["input"]?.string,
                     point: point, podWhere: podWhere, session: session, outputEncoding: outputEncoding)
    }

    static func command(_ body: JSONValue, field: String) throws(ProtectionError) -> [String] {
        guard let list = body["command"]?.array, !list.isEmpty else {
            throw ProtectionError(.invalidBlueprint, "a command is a non-empty list of strings", field: "\(field).command")
        }
        var command: [String] = []
        for (i, item) in list.enumerated() {
            switch item {
            case .string(let s): command.append(s)
            case .int(let n): command.append(String(n))
            default: throw ProtectionError(.invalidBlueprint, "must be a string", field: "\(field).command[\(i)]")
            }
        }
        return command
    }

    static func target(_ body: JSONValue, field: String, hooks: Bool) throws(ProtectionError) -> PodTarget {
        if let workload = body["workload"]?.string {
            let (kind, name) = try workloadName(workload, field: "\(field).workload")
            guard body["selector"] == nil else {
                throw ProtectionError(.invalidBlueprint, "give workload or selector, not both", field: field)
            }
            return .workload(kind: kind, name: name)
        }
        if let selector = body["selector"] {
            guard let text = selector.string, !text.isEmpty else {
                throw ProtectionError(.invalidBlueprint, "a label selector such as app=db", field: "\(field).selector")
            }
            return .selector(text)
        }
        guard !hooks else {
            throw ProtectionError(.invalidBlueprint, "a hook names its pods: workload (StatefulSet/db) or selector (app=db)", field: field)
        }
        return .boundWorkload
    }

    /// `Kind/name` of a Deployment or StatefulSet.
    static func workloadName(_ text: String, field: String) throws(ProtectionError) -> (kind: String, name: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, ["Deployment", "StatefulSet"].contains(parts[0]), !parts[1].isEmpty else {
            throw ProtectionError(.invalidBlueprint, "'\(text)' is not a workload such as StatefulSet/db or Deployment/web", field: field)
        }
        return (parts[0], parts[1])
    }

    /// Inputs name an artifact of the backup action; templates name earlier phases of their action.
    func checkReferences(at field: String) throws(ProtectionError) {
        // Artifacts come from the backup side (backup, beforeCapture, afterCapture): one name each.
        var artifacts: Set<String> = []
        for action in [ActionName.backup, .beforeCapture, .afterCapture] {
            for (list, phases) in [("phases", actions[action]?.phases ?? []), ("deferred", actions[action]?.deferred ?? [])] {
                for (i, phase) in phases.enumerated() where phase.artifact {
                    guard artifacts.insert(phase.name).inserted else {
                        throw ProtectionError(.invalidBlueprint, "another phase already stores an artifact named \(phase.name)",
                                              field: "\(field).\(action.rawValue).\(list)[\(i)].name")
                    }
                }
            }
        }
        for (action, body) in actions.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            var earlier: [String] = []
            var pointAt: String?
            for (list, phases) in [("phases", body.phases), ("deferred", body.deferred)] {
                for (i, phase) in phases.enumerated() {
                    let here = "\(field).\(action.rawValue).\(list)[\(i)]"
                    if let input = phase.input {
                        guard action == .restore || action == .beforeStart || action == .delete else {
                            throw ProtectionError(.invalidBlueprint, "only restore, beforeStart and delete phases take an input artifact", field: "\(here).input")
                        }
                        guard artifacts.contains(input) else {
                            throw ProtectionError(.invalidBlueprint, "no backup phase stores an artifact named \(input)"
                                                  + (artifacts.isEmpty ? "" : " (artifacts: \(artifacts.sorted().joined(separator: ", ")))"),
                                                  field: "\(here).input")
                        }
                    }
                    if phase.point != nil {
                        guard action == .backup, list == "phases" else {
                            throw ProtectionError(.invalidBlueprint, "only the phases of the backup action mark a consistent point", field: "\(here).point")
                        }
                        guard pointAt == nil else {
                            throw ProtectionError(.invalidBlueprint, "the point is already marked by phase \(pointAt!): an action has one", field: "\(here).point")
                        }
                        pointAt = phase.name
                    }
                    if phase.artifact && ![.backup, .beforeCapture, .afterCapture].contains(action) {
                        throw ProtectionError(.invalidBlueprint, "only backup, beforeCapture and afterCapture phases store artifacts", field: "\(here).output")
                    }
                    if phase.session != nil && (action != .beforeCapture || list != "phases") {
                        throw ProtectionError(.invalidBlueprint, "only beforeCapture phases hold a session across the capture", field: "\(here).exec.session")
                    }
                    if action == .beforeStart, case .task = phase.step {} else if action == .beforeStart {
                        throw ProtectionError(.invalidBlueprint, "beforeStart runs before the workload has pods: task phases only", field: here)
                    }
                    if case .task(_, _, _, let volumes) = phase.step, !volumes.isEmpty, action != .beforeStart {
                        throw ProtectionError(.invalidBlueprint, "only beforeStart tasks mount claims (the workload's pods hold them otherwise)",
                                              field: "\(here).task.volumes")
                    }
                    for text in phase.templates {
                        do {
                            try BlueprintTemplate.check(text, phases: earlier)
                        } catch {
                            throw ProtectionError(.invalidBlueprint, error.message, field: here)
                        }
                    }
                    earlier.append(phase.name)
                }
            }
        }
    }
}

extension Blueprint.Phase {
    /// Every templated string of the phase.
    var templates: [String] {
        switch step {
        case .exec(_, _, _, let command): command + (podWhere?.command ?? [])
        case .task(let image, let command, let env, let volumes): [image] + command + env.compactMap(\.value) + volumes.map(\.claim)
        case .scale(_, let replicas, _): [replicas]
        case .wait: []
        }
    }
}
