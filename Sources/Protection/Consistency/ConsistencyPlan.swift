import Concurrent
import Foundation
import Kube
import Repository
import Snapshot

/// Binds blueprints to workloads by labels (the other way is the workload's `cairn.dev/blueprint`
/// annotation).
public struct BlueprintBinding: Sendable, Equatable {
    public var blueprint: String
    public var matchLabels: [String: String]

    public init(blueprint: String, matchLabels: [String: String]) {
        self.blueprint = blueprint
        self.matchLabels = matchLabels
    }
}

/// What a backup does for consistency besides reading volumes: the blueprints bound to the application's
/// workloads and the hooks of the Policy or BackupAction, in this order —
///
/// 1. every bound workload's `backup` action (database-native dumps: artifacts streamed into the
///    repository);
/// 2. the hooks' `beforeCapture`, then each workload's `beforeCapture` (fences);
/// 3. the volumes are read (`capture`);
/// 4. each workload's `afterCapture`, then the hooks' `afterCapture` — whenever step 2 began, whatever
///    happened since (a fence is always released).
///
/// The members of a consistency group are left out of steps 1, 2 and 4: after step 2 their fences are taken
/// at once, their dumps started at once and held until each has its consistent point (with the volumes
/// read too when a member's claims are captured), and their fences released at once (`groupBackup`).
///
/// A failing phase fails the backup (no restore point is written) with the phase, where it ran, its exit
/// status and its stderr's last lines; the records of every phase go into the restore point's metadata.
public struct ConsistencyPlan: Sendable {
    public struct Bound: Sendable {
        public var workload: WorkloadRef
        public var blueprint: Blueprint
    }

    public var bound: [Bound]
    public var hooks: [String: [Blueprint.Phase]]
    /// Workloads captured at one instant (every one of them is in `bound`).
    public var group: ConsistencyGroup?
    /// Whether a member of the group has claims whose files are read: the volumes are then read while its
    /// fences hold.
    var groupReadsVolumes = false

    /// Finds the blueprint of each Deployment and StatefulSet among `objects`: its annotation first, then
    /// the first binding whose labels it carries. A name that `blueprints` does not hold is an error.
    /// `invalid`: blueprints that exist but do not check, with why (named in the error).
    public init(objects: [KubeObject], blueprints: [String: Blueprint], invalid: [String: String] = [:],
                bindings: [BlueprintBinding], hooks: [String: [Blueprint.Phase]],
                group: ConsistencyGroup? = nil) throws(ProtectionError) {
        self.hooks = hooks
        self.group = group
        bound = []
        for object in objects where object.group == "apps" && (object.kind == "Deployment" || object.kind == "StatefulSet") {
            let ref = WorkloadRef(kind: object.kind, name: object.name)
            let name: String
            if let annotated = object.annotations[Blueprint.annotation] {
                name = annotated
            } else if let binding = bindings.first(where: { b in b.matchLabels.allSatisfy { object.labels[$0.key] == $0.value } }) {
                name = binding.blueprint
            } else {
                continue
            }
            if let problem = invalid[name], blueprints[name] == nil {
                throw ProtectionError(.invalidBlueprint, "\(ref) names blueprint \(name), which is invalid: \(problem)")
            }
            guard let blueprint = blueprints[name] else {
                throw ProtectionError(.invalidBlueprint, "\(ref) names blueprint \(name), which does not exist"
                                      + (blueprints.isEmpty ? "" : " (blueprints: \(blueprints.keys.sorted().joined(separator: ", ")))"))
            }
            bound.append(Bound(workload: ref, blueprint: blueprint))
        }
        if let group {
            for member in group.workloads {
                guard objects.contains(where: { $0.group == "apps" && "\($0.kind)/\($0.name)" == member }) else {
                    throw ProtectionError(.invalidBlueprint, "the consistency group names \(member), which the backup does not hold "
                                          + "(not in the namespace, or left out by the label selector)", field: "consistencyGroup.workloads")
                }
                guard let entry = bound.first(where: { $0.workload.description == member }) else {
                    throw ProtectionError(.invalidBlueprint, "\(member) is in the consistency group but has no blueprint: its fence and its "
                                          + "consistent point come from one (annotation \(Blueprint.annotation), or blueprintBindings)",
                                          field: "consistencyGroup.workloads")
                }
                if entry.blueprint.volumes.readsVolumes,
                   let object = objects.first(where: { "\($0.kind)/\($0.name)" == member }),
                   !StatefulSet(object).claimNames.isEmpty || !StatefulSet(object).volumeClaimTemplateNames.isEmpty {
                    groupReadsVolumes = true
                }
            }
        }
    }

    /// The bound workloads in the consistency group, in the group's order.
    var members: [Bound] {
        (group?.workloads ?? []).compactMap { member in bound.first { $0.workload.description == member } }
    }

    public var isEmpty: Bool { bound.isEmpty && hooks.values.allSatisfy(\.isEmpty) }

    /// The claims whose data the blueprints hold instead of a volume copy (`volumes: skip`).
    public func skippedClaims(in objects: [KubeObject]) -> Set<String> {
        Set(claims(in: objects, where: .skip).keys)
    }

    /// The claims that may be read only from a CSI snapshot (`volumes: snapshot`), each with its workload and
    /// blueprint, as a reason to give when one cannot be.
    public func snapshotOnlyClaims(in objects: [KubeObject]) -> [String: String] {
        claims(in: objects, where: .snapshot)
    }

    /// The paths the blueprints leave out of their workloads' claims (`exclude`), by claim.
    public func excludedPaths(in objects: [KubeObject]) -> [String: [String]] {
        var paths: [String: [String]] = [:]
        for entry in bound where !entry.blueprint.exclude.isEmpty {
            for claim in claimNames(of: entry, in: objects) { paths[claim, default: []] += entry.blueprint.exclude }
        }
        return paths
    }

    /// The claims of the workloads whose blueprint reads volumes `mode`'s way → "Kind/name (blueprint NAME)".
    func claims(in objects: [KubeObject], where mode: Blueprint.VolumeMode) -> [String: String] {
        var claims: [String: String] = [:]
        for entry in bound where entry.blueprint.volumes == mode {
            for claim in claimNames(of: entry, in: objects) { claims[claim] = "\(entry.workload) (blueprint \(entry.blueprint.name))" }
        }
        return claims
    }

    /// The claims a bound workload's pods use: its volumes' claims and, for a StatefulSet, each replica's
    /// claims from its templates.
    func claimNames(of entry: Bound, in objects: [KubeObject]) -> [String] {
        guard let object = objects.first(where: { $0.kind == entry.workload.kind && $0.name == entry.workload.name }) else { return [] }
        var claims = StatefulSet(object).claimNames
        if entry.workload.kind == "StatefulSet" { claims += StatefulSet(object).templateClaimNames }
        return claims
    }

    /// The result of the backup-side steps.
    public struct Result: Sendable {
        public var records: [PhaseRecord] = []
        /// `artifacts/<Kind>-<name>/<phase>` → stored content.
        public var artifacts: [String: Node] = [:]
        /// How the consistency group's fences went.
        public var group: GroupReport?
    }

    /// What a consistency group's backup reports (restore point metadata, BackupAction status).
    public struct GroupReport: Codable, Sendable, Equatable {
        public var workloads: [String]
        /// When the first fence began.
        public var fenceStarted: Date
        /// Seconds from the first fence's start until every fence held.
        public var fencedSeconds: Double
        /// Seconds from the first fence's start until every fence was released: the longest any writer
        /// the fences hold back waited.
        public var windowSeconds: Double
        /// Whether the volumes were read while the fences held (a member reads volumes).
        public var volumesInWindow: Bool
        /// Seconds from the first fence's start until each member's consistent point (`Kind/name` → s):
        /// the latest is what kept the fences.
        public var pointSeconds: [String: Double]?
    }

    /// Runs steps 1, 2 and 4 around `capture` (step 3). `runner` runs the hooks and any blueprint that
    /// `runners` has none of its own for (by blueprint name: a namespace's blueprint runs as its author).
    public func backup(runner: BlueprintRunner, runners: [String: BlueprintRunner] = [:], progress: @escaping @Sendable (String) -> Void,
                       capture: () async throws -> Void) async throws -> Result {
        let hooksRunner = runner
        func runnerFor(_ blueprint: Blueprint?) -> BlueprintRunner {
            blueprint.flatMap { runners[$0.name] } ?? hooksRunner
        }
        var result = Result()
        // Sessions held open across the capture, by index in `fenced`.
        var held: [Int: [HeldSession]] = [:]
        func take(_ outcome: BlueprintRunner.Outcome, for workload: WorkloadRef?) throws(ProtectionError) {
            result.records += outcome.records
            if let workload {
                for (phase, node) in outcome.artifacts { result.artifacts[Self.artifactDirectory(workload) + "/" + phase] = node }
            }
            try outcome.check()
        }
        let time = Date()
        let memberNames = Set(group?.workloads ?? [])
        for entry in bound where !memberNames.contains(entry.workload.description) {
            guard let action = entry.blueprint.actions[.backup] else { continue }
            try take(try await runnerFor(entry.blueprint).run(action, named: "backup", blueprint: entry.blueprint.name, workload: entry.workload,
                                          time: time, progress: progress), for: entry.workload)
        }
        // Fences: hooks first (they may stop writers), then each workload's.
        var fenced: [(WorkloadRef?, Blueprint)] = []
        var failure: Error?
        do {
            if let phases = hooks["beforeCapture"], !phases.isEmpty {
                fenced.append((nil, Self.hookBlueprint(phases: phases, afterCapture: hooks["afterCapture"] ?? [])))
                let outcome = try await hooksRunner.run(Blueprint.Action(phases: phases), named: "beforeCapture", blueprint: "hooks",
                                                        workload: nil, time: time, progress: progress)
                held[fenced.count - 1] = outcome.sessions
                try take(outcome, for: nil)
            } else if let phases = hooks["afterCapture"], !phases.isEmpty {
                fenced.append((nil, Self.hookBlueprint(phases: [], afterCapture: phases)))
            }
            for entry in bound where !memberNames.contains(entry.workload.description) {
                fenced.append((entry.workload, entry.blueprint))
                guard let action = entry.blueprint.actions[.beforeCapture] else { continue }
                let outcome = try await runnerFor(entry.blueprint).run(action, named: "beforeCapture", blueprint: entry.blueprint.name,
                                                                       workload: entry.workload, time: time, progress: progress)
                held[fenced.count - 1] = outcome.sessions
                try take(outcome, for: entry.workload)
            }
            if let group, !members.isEmpty {
                let run = try await groupBackup(group, runners: members.map { runnerFor($0.blueprint) }, time: time, progress: progress,
                                                readVolumes: groupReadsVolumes, capture: capture)
                result.group = run.report
                for (workload, outcome) in run.outcomes { try take(outcome, for: workload) }
                if let failure = run.failure { throw failure }
                if !groupReadsVolumes { try await capture() }
            } else {
                try await capture()
            }
        } catch {
            failure = error
        }
        // Releases, in the reverse order of the fences: a workload's sessions, then its afterCapture.
        for (i, (workload, blueprint)) in fenced.enumerated().reversed() {
            if let sessions = held[i], !sessions.isEmpty {
                progress("ending \(sessions.count) session\(sessions.count == 1 ? "" : "s") of \(workload?.description ?? "the hooks")")
                do {
                    try take(await HeldSession.end(sessions, runner: runnerFor(workload == nil ? nil : blueprint)), for: workload)
                } catch {
                    if failure == nil { failure = error }
                }
            }
            guard let action = blueprint.actions[.afterCapture] else { continue }
            do {
                try take(try await runnerFor(workload == nil ? nil : blueprint).run(action, named: "afterCapture", blueprint: workload == nil ? "hooks" : blueprint.name,
                                              workload: workload, time: time, progress: progress), for: workload)
            } catch {
                if failure == nil { failure = error }
            }
        }
        if var failure = failure as? ProtectionError {
            failure.phases = result.records
            throw failure
        }
        if let failure { throw failure }
        return result
    }

    /// The consistency group's steps: every member's fence (`beforeCapture`) at once, within the group's
    /// `fenceTimeout`; then every member's `backup` action at once, until each has its consistent point
    /// (`Blueprint.Point`; the volumes read, when `capture` is given); then every release (`afterCapture`)
    /// at once — whatever happened, for every member — while the dumps stream on; then the dumps' ends.
    /// Every outcome is returned (records and artifacts), in that order, with the first failure.
    func groupBackup(_ group: ConsistencyGroup, runners: [BlueprintRunner], time: Date,
                     progress: @escaping @Sendable (String) -> Void,
                     readVolumes: Bool, capture: () async throws -> Void) async throws -> (report: GroupReport, outcomes: [(WorkloadRef, BlueprintRunner.Outcome)], failure: (any Error)?) {
        let members = self.members
        let clock = ContinuousClock()
        let started = clock.now
        let startDate = Date()
        var outcomes: [(WorkloadRef, BlueprintRunner.Outcome)] = []
        var failure: (any Error)?
        progress("consistency group \(members.map(\.workload.description).joined(separator: ", ")): taking every fence")

        // 1. Fences, at once, within the fence timeout.
        let fences = await Self.all(members, within: group.fenceTimeout) { i, entry in
            guard let action = entry.blueprint.actions[.beforeCapture] else { return BlueprintRunner.Outcome() }
            return try await runners[i].run(action, named: "beforeCapture", blueprint: entry.blueprint.name,
                                            workload: entry.workload, time: time, progress: progress)
        }
        for (i, entry) in members.enumerated() {
            switch fences[i] {
            case .success(let outcome)?:
                outcomes.append((entry.workload, outcome))
                if failure == nil, let error = outcome.failure { failure = error }
            case .failure(let error)?: if failure == nil { failure = error }
            case nil:
                if failure == nil {
                    failure = ProtectionError(.phaseFailed, "consistency group: the fence of \(entry.workload) (blueprint \(entry.blueprint.name)) "
                                              + "did not hold within \(BlueprintRunner.period(group.fenceTimeout)) (fenceTimeout); every fence was released")
                }
            }
        }
        let fencedAt = clock.now

        // 2. Every member's consistent point, while every fence holds.
        enum Event: Sendable { case point(Int), ended(Int, Swift.Result<BlueprintRunner.Outcome, any Error>) }
        let (events, signal) = AsyncStream<Event>.makeStream()
        // Nothing is dumped unless every fence holds.
        let fencesHeld = failure == nil
        let dumps = Task {
            guard fencesHeld else {
                signal.finish()
                return
            }
            await withTaskGroup(of: Void.self) { tasks in
                for (i, entry) in members.enumerated() {
                    guard let action = entry.blueprint.actions[.backup] else {
                        signal.yield(.ended(i, .success(BlueprintRunner.Outcome())))
                        continue
                    }
                    let runner = runners[i]
                    tasks.addTask {
                        do {
                            let outcome = try await runner.run(action, named: "backup", blueprint: entry.blueprint.name, workload: entry.workload,
                                                               time: time, progress: progress, point: { signal.yield(.point(i)) })
                            signal.yield(.ended(i, .success(outcome)))
                        } catch {
                            signal.yield(.ended(i, .failure(error)))
                        }
                    }
                }
            }
            signal.finish()
        }
        var ended: [Int: Swift.Result<BlueprintRunner.Outcome, any Error>] = [:]
        var pointSeconds: [String: Double] = [:]
        if failure == nil {
            var points: Set<Int> = []
            func reached(_ i: Int) {
                guard points.insert(i).inserted else { return }
                pointSeconds[members[i].workload.description] = ((clock.now - started).seconds * 1000).rounded() / 1000
            }
            for await event in events {
                switch event {
                case .point(let i): reached(i)
                case .ended(let i, let result):
                    reached(i)
                    ended[i] = result
                    if case .success(let outcome) = result, let error = outcome.failure, failure == nil { failure = error }
                    if case .failure(let error) = result, failure == nil { failure = error }
                }
                if points.count == members.count || failure != nil { break }
            }
            if failure == nil, readVolumes {
                progress("consistency group: every point exists; reading the volumes while the fences hold")
                do { try await capture() } catch { failure = error }
            }
        }
        if failure != nil { dumps.cancel() }
        let pointsAt = clock.now

        // 3. Releases, at once, for every member.
        progress("consistency group: releasing every fence")
        let memberSessions: [[HeldSession]] = members.indices.map { i in
            if case .success(let outcome)? = fences[i] { return outcome.sessions }
            return []
        }
        let releases = await Self.all(members, within: nil) { i, entry in
            var outcome = await HeldSession.end(memberSessions[i], runner: runners[i])
            guard let action = entry.blueprint.actions[.afterCapture] else { return outcome }
            let after = try await runners[i].run(action, named: "afterCapture", blueprint: entry.blueprint.name,
                                                 workload: entry.workload, time: time, progress: progress)
            outcome.records += after.records
            outcome.artifacts.merge(after.artifacts) { a, _ in a }
            if outcome.failure == nil { outcome.failure = after.failure }
            return outcome
        }
        let releasedAt = clock.now

        // 4. The dumps' ends.
        for await event in events {
            if case .ended(let i, let result) = event { ended[i] = result }
        }
        await dumps.value
        for (i, entry) in members.enumerated() {
            switch ended[i] {
            case .success(let outcome)?:
                outcomes.append((entry.workload, outcome))
                if failure == nil, let error = outcome.failure { failure = error }
            case .failure(let error)?: if failure == nil { failure = error }
            case nil: break
            }
        }
        for (i, entry) in members.enumerated() {
            switch releases[i] {
            case .success(let outcome)?:
                outcomes.append((entry.workload, outcome))
                if failure == nil, let error = outcome.failure { failure = error }
            case .failure(let error)?: if failure == nil { failure = error }
            case nil: break
            }
        }
        let report = GroupReport(workloads: members.map(\.workload.description), fenceStarted: startDate,
                                 fencedSeconds: ((fencedAt - started).seconds * 1000).rounded() / 1000,
                                 windowSeconds: ((releasedAt - started).seconds * 1000).rounded() / 1000,
                                 volumesInWindow: readVolumes, pointSeconds: pointSeconds.isEmpty ? nil : pointSeconds)
        progress(String(format: "consistency group: fences held after %.2f s, points after %.2f s, released after %.2f s",
                        (fencedAt - started).seconds, (pointsAt - started).seconds, report.windowSeconds)
                 + (pointSeconds.isEmpty ? "" : " (points: " + pointSeconds.sorted { $0.value < $1.value }
                     .map { String(format: "%@ %.2f s", $0.key, $0.value) }.joined(separator: ", ") + ")"))
        return (report, outcomes, failure)
    }

    /// Runs `body` for every member at once; with a `limit`, those not finished by then are cancelled (nil).
    static func all<T: Sendable>(_ members: [Bound], within limit: TimeInterval?,
                                 _ body: @escaping @Sendable (Int, Bound) async throws -> T) async -> [Swift.Result<T, any Error>?] {
        await withTaskGroup(of: (Int, Swift.Result<T, any Error>)?.self) { tasks in
            for (i, entry) in members.enumerated() {
                tasks.addTask {
                    do { return (i, .success(try await body(i, entry))) } catch { return (i, .failure(error)) }
                }
            }
            if let limit {
                tasks.addTask {
                    try? await Task.sleep(for: .seconds(limit))
                    return nil
                }
            }
            var results = [Swift.Result<T, any Error>?](repeating: nil, count: members.count)
            var done = 0
            while done < members.count, let next = await tasks.next() {
                guard let (i, result) = next else { break }
                results[i] = result
                done += 1
            }
            tasks.cancelAll()
            return results
        }
    }

    static func hookBlueprint(phases: [Blueprint.Phase], afterCapture: [Blueprint.Phase]) -> Blueprint {
        var actions: [Blueprint.ActionName: Blueprint.Action] = [:]
        if !afterCapture.isEmpty { actions[.afterCapture] = Blueprint.Action(phases: afterCapture) }
        return Blueprint(name: "hooks", actions: actions)
    }

    /// Where a workload's artifacts stand in a restore point.
    public static func artifactDirectory(_ workload: WorkloadRef) -> String {
        "artifacts/\(workload.kind)-\(workload.name)"
    }
}
