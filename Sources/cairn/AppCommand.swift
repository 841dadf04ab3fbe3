import ArgumentParser
import Foundation
import Kube
import Protection
import Repository
import Snapshot

extension VolumeAccessMode: ExpressibleByArgument {}
extension ApplicationBackup.Quiesce: ExpressibleByArgument {}
extension ObjectRestorer.ExistingPolicy: ExpressibleByArgument {}

struct AppCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app",
        abstract: "Protect whole applications: a namespace's objects and volume data as restore points.",
        subcommands: [AppListCommand.self, AppBackupCommand.self, AppRestoreCommand.self, AppExportCommand.self])
}

/// How volume data is read and written: shared by `app backup` and `app restore`.
struct VolumeOptions: ParsableArguments {
    @Option(name: .customLong("volume-access"), help: "How volume data is read and written: auto (a CSI snapshot where the claim's driver has a VolumeSnapshotClass, else host, else mover), snapshot (a warning for claims without one), host or mover.")
    var access: VolumeAccessMode = .auto
    @Option(name: .customLong("mover-image"),
            help: "Image of mover pods. Default: $CAIRN_MOVER_IMAGE or \(MoverVolumeAccess.defaultImage).")
    var moverImage: String?
    @Option(name: .customLong("parallel-volumes"),
            help: "How many volumes are read or written at once, each by a mover on its volume's node (or on the host).")
    var parallel: Int = 4

    func validate() throws {
        guard parallel >= 1 else { throw ValidationError("--parallel-volumes must be at least 1") }
    }

    var image: String {
        moverImage ?? ProcessInfo.processInfo.environment["CAIRN_MOVER_IMAGE"] ?? MoverVolumeAccess.defaultImage
    }
}

struct AppListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List applications (namespaces) with their workloads and claims, and their latest restore point when --repo is given.")

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Include kube-system, kube-public and kube-node-lease.")
    var all = false

    struct Row: Encodable {
        var namespace: String
        var workloads: Int
        var claims: Int
        var latestRestorePoint: String?
        var latestTime: Date?
    }

    func run() async throws {
        try await runReporting {
            var points: [String: RestorePoint.Summary] = [:]
            if global.repo != nil || ProcessInfo.processInfo.environment["CAIRN_REPOSITORY"] != nil {
                let repo = try await global.open(readAhead: [.snapshots])
                for point in try await RestorePoint.list(in: repo) { points[point.namespace] = point }
            }
            let rows = try await cluster.withClient { client -> [Row] in
                let namespaces = try await client.list(Namespace.self).map(\.name)
                    .filter { all || !["kube-system", "kube-public", "kube-node-lease"].contains($0) }
                async let deployments = client.list(Deployment.self)
                async let statefulSets = client.list(StatefulSet.self)
                async let claims = client.list(PersistentVolumeClaim.self)
                var workloads: [String: Int] = [:]
                for w in try await deployments { workloads[w.namespace ?? "", default: 0] += 1 }
                for w in try await statefulSets { workloads[w.namespace ?? "", default: 0] += 1 }
                var claimCount: [String: Int] = [:]
                for c in try await claims { claimCount[c.namespace ?? "", default: 0] += 1 }
                return namespaces.sorted().map {
                    Row(namespace: $0, workloads: workloads[$0] ?? 0, claims: claimCount[$0] ?? 0,
                        latestRestorePoint: points[$0]?.id, latestTime: points[$0]?.time)
                }
            }
            if global.json {
                try printJSON(rows)
            } else {
                printTable(["NAMESPACE", "WORKLOADS", "CLAIMS", "LATEST RESTORE POINT"], rows.map { row in
                    return [row.namespace, "\(row.workloads)", "\(row.claims)",
                            row.latestRestorePoint == nil ? "-" : "\(row.latestRestorePoint!.prefix(8)) \(formatDate(row.latestTime!))"]
                })
            }
            return 0
        }
    }
}

struct AppBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up an application — every object of a namespace and its volume data — into a restore point.",
        discussion: """
            Objects come from discovery (custom resources included) plus the cluster-scoped objects the \
            application needs (its CRDs, PersistentVolumes, StorageClasses, cluster roles and bindings). Left \
            out by rule: Events, Endpoints(Slices), Leases, controller-owned Pods/ReplicaSets/Jobs, \
            service-account tokens, kube-root-ca.crt; --include/--exclude override (Kind, Kind/name, \
            group/Kind, *.group). Volume data of bound claims is read by host access (hostPath/local volumes on \
            this machine) or a mover pod of Cairn's image (any volume; image built by scripts/build-image).
            """)

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The application's namespace.")
    var namespace: String
    @Option(name: [.short, .long], help: "Only objects with these labels (a label selector).")
    var selector: String?
    @Option(name: .long, help: "Capture objects the rules leave out (repeatable): Kind, Kind/name, group/Kind, *.group.")
    var include: [String] = []
    @Option(name: .long, help: "Leave objects out (repeatable): Kind, Kind/name, group/Kind, *.group.")
    var exclude: [String] = []
    @Option(name: .long, help: "Stop the application while its volumes are read: none or scale (to zero and back).")
    var quiesce: ApplicationBackup.Quiesce = .none
    @OptionGroup var volumes: VolumeOptions
    @Flag(name: .long, help: "Objects only: do not read volume data.")
    var noVolumes = false
    @Option(name: .long, help: "A blueprint file (repeatable): workloads name it with the annotation cairn.dev/blueprint, besides the cluster's Blueprints.")
    var blueprint: [String] = []
    @Option(name: .long, help: "A hooks file: beforeCapture and afterCapture phases (docs/crds.md, \"Hooks\").")
    var hooks: String?
    @Option(name: .long, help: "A member of the consistency group (repeatable), Kind/name: the members' state is captured at one instant (docs/operations.md).")
    var group: [String] = []
    @Option(name: .long, help: "How long every fence of the consistency group may take to hold (30s, 2m).")
    var fenceTimeout: String?
    @Option(name: .long, help: "How long CSI volume snapshots may take to become ready to use (default 5m).")
    var snapshotTimeout: String?
    @Flag(name: .long, help: "Keep the CSI volume snapshots as the restore point's local tier: a restore into this namespace makes its claims from them in seconds (delete them with kubectl, or let a Policy's localSnapshots.keep do it).")
    var keepSnapshots = false

    struct Output: Encodable {
        var restorePoint: String
        var namespace: String
        var objects: Int
        var objectsByKind: [String: Int]
        var volumes: [VolumeTransfer]
        var skipped: [String]
        var warnings: [String]
        var quiesced: [String]
        var phases: [PhaseRecord]
        var consistencyGroup: ConsistencyPlan.GroupReport?
        var volumeSnapshots: SnapshotVolumeAccess.Report?
        var seconds: Double
    }

    func run() async throws {
        try await runReporting {
            let rules = CaptureRules(include: try selectors(include, "--include"), exclude: try selectors(exclude, "--exclude"))
            var groupJSON: JSONValue = ["workloads": .array(group.map { .string($0) })]
            if let fenceTimeout { groupJSON["fenceTimeout"] = .string(fenceTimeout) }
            let consistencyGroup = group.isEmpty && fenceTimeout == nil ? nil : try ConsistencyGroup(json: groupJSON, field: "--group")
            let files = try blueprint.map { try CheckedFile($0) }
            let snapshotSeconds = try snapshotTimeout.map { text in
                guard let seconds = Period.seconds(text), seconds > 0 else {
                    throw CLIError.usage("--snapshot-timeout: '\(text)' is not a duration (30s, 5m)")
                }
                return seconds
            }
            let hookPhases = try hooks.map { try CheckedFile($0).hooks(allowed: ["beforeCapture", "afterCapture"]) } ?? [:]
            let repo = try await global.open()
            let showProgress = !global.json && !global.quiet
            let result = try await cluster.withClient { client in
                var catalog = try await BlueprintCatalog.load(namespace: namespace, reader: client,
                                                              systemNamespace: cairnSystemNamespace, systemReader: client)
                for file in files {
                    // A file's mistakes stop here, with their lines, rather than at the workload naming it.
                    _ = try file.blueprint()
                    catalog.add(file.document, origin: file.path,
                                name: URL(fileURLWithPath: file.path).deletingPathExtension().lastPathComponent)
                }
                var options = ApplicationBackup.Options(
                    namespace: namespace, labelSelector: selector, rules: rules, volumeAccess: volumes.access,
                    moverImage: volumes.image,
                    quiesce: quiesce, volumes: !noVolumes)
                options.volumeWidth = volumes.parallel
                options.blueprints = catalog.valid
                options.invalidBlueprints = catalog.invalid
                options.hooks = hookPhases
                options.consistencyGroup = consistencyGroup
                options.keepSnapshots = keepSnapshots
                if let snapshotSeconds { options.snapshotTimeout = .milliseconds(Int64(snapshotSeconds * 1000)) }
                return try await ApplicationBackup(client: client, repository: repo, options: options)
                    .run(progress: { line in if showProgress { printError(line) } })
            }
            let m = result.metadata
            if global.json {
                try printJSON(Output(restorePoint: result.snapshot.id, namespace: m.namespace, objects: m.objects,
                                     objectsByKind: m.objectsByKind, volumes: m.volumes ?? [], skipped: m.skipped,
                                     warnings: m.warnings, quiesced: m.quiesced ?? [], phases: m.phases ?? [],
                                     consistencyGroup: m.consistencyGroup, volumeSnapshots: m.volumeSnapshots,
                                     seconds: result.seconds))
            } else {
                printWarnings(m.warnings)
                if !global.quiet {
                    let kinds = m.objectsByKind.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                    print("objects: \(m.objects) (\(kinds)); \(m.skipped.count) left out by rule")
                    for v in m.volumes ?? [] {
                        print("volume \(v.claim): \(v.files) files, \(formatBytes(v.bytes)), \(formatBytes(v.bytesAdded ?? 0)) new (\(v.method))")
                    }
                    for p in m.phases ?? [] {
                        print("\(p.blueprint) \(p.action)/\(p.phase)\(p.workload.map { " (\($0))" } ?? ""): \(p.result) in \(String(format: "%.1f", p.seconds)) s"
                              + (p.artifactBytes.map { ", artifact \(formatBytes(Int($0)))" } ?? "")
                              + (p.artifactStreamedBytes.map { " (\(formatBytes(Int($0))) compressed in transit)" } ?? ""))
                    }
                    if let s = m.volumeSnapshots {
                        print("volume snapshots: \(s.snapshots.count) taken within \(Int(s.spreadSeconds)) s of each other, ready after "
                              + String(format: "%.1f s", s.takeSeconds) + (s.kept == true ? "; kept as the local tier" : ""))
                    }
                    if let g = m.consistencyGroup {
                        print("consistency group \(g.workloads.joined(separator: ", ")): fences held after "
                              + String(format: "%.2f s, released after %.2f s", g.fencedSeconds, g.windowSeconds)
                              + (g.volumesInWindow ? " (volumes read while fenced)" : ""))
                    }
                    print("restore point \(result.snapshot.shortID) of namespace \(m.namespace) saved in \(formatDuration(result.seconds))")
                }
            }
            let problems = (m.volumes ?? []).flatMap(\.problems)
            if !problems.isEmpty {
                for p in problems.prefix(20) { printError("not backed up: \(p)") }
                return Exit.partial
            }
            return 0
        }
    }
}

/// Prints at most ten warnings; the rest are counted (all of them are in --json and the restore point).
func printWarnings(_ warnings: [String]) {
    for warning in warnings.prefix(10) { printError("warning: \(warning)") }
    if warnings.count > 10 { printError("… and \(warnings.count - 10) more warnings (all of them with --json and in `cairn restorepoints --json`)") }
}

func selectors(_ texts: [String], _ option: String) throws -> [CaptureRules.Selector] {
    try texts.map { text in
        guard let selector = CaptureRules.Selector(text) else {
            throw CLIError.usage("\(option) \(text): expected Kind, Kind/name, group/Kind, group/Kind/name or *.group")
        }
        return selector
    }
}

struct AppRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore an application from a restore point: in place, into another namespace, with transforms, or in part.",
        discussion: """
            RESTOREPOINT is an ID prefix (see `cairn restorepoints`) or a namespace for its latest restore point. \
            Objects go back in dependency order; volume data is written into new volumes after the claims \
            and before any workload. Exit 3 when some objects or volumes failed (the rest is restored; see \
            the report). With --target, files of one volume (--volume) are restored into a local directory instead.
            """)

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Restore point ID prefix, or a namespace (its latest restore point).")
    var restorePoint: String
    @Option(name: .long, help: "Restore into this namespace instead of the original.")
    var toNamespace: String?
    @Option(name: .long, help: "A transforms file (YAML or JSON; a TransformSet resource is read the same).")
    var transform: String?
    @Option(name: .long, help: "Objects that already exist: skip, update, recreate or fail.")
    var existing: ObjectRestorer.ExistingPolicy = .fail
    @Flag(name: .long, help: "Print the plan (order, objects, transforms) without touching the cluster.")
    var dryRun = false
    @Option(name: .long, help: "Only these objects (repeatable): Kind, Kind/name, group/Kind, *.group.")
    var only: [String] = []
    @Flag(name: .long, help: "Only claims and their data.")
    var volumesOnly = false
    @Option(name: .long, help: "Only the data of this claim (repeatable).")
    var volume: [String] = []
    @Flag(name: .long, help: "Objects only: do not write volume data.")
    var noVolumes = false
    @Flag(name: .long, help: "Keep files a written volume holds beyond the restore point (by default they are removed).")
    var keepExtraFiles = false
    @OptionGroup var volumes: VolumeOptions
    @Option(name: .long, help: "Restore files of --volume into this local directory instead of the cluster.")
    var target: String?
    @Option(name: .long, help: "With --target: only these paths inside the volume (repeatable).")
    var path: [String] = []
    @Flag(name: .long, help: "Write every claim's data from the repository, even where the restore point's local tier (kept VolumeSnapshots) could make it.")
    var fromRepository = false
    @Option(name: .long, help: "A hooks file: afterRestore phases, run once the application is restored (docs/crds.md, \"Hooks\").")
    var hooks: String?

    func run() async throws {
        try await runReporting {
            let repo = try await global.open()
            let snapshot = try await RestorePoint.find(restorePoint, in: repo)
            if let target {
                guard volume.count == 1 else { throw CLIError.usage("--target needs exactly one --volume CLAIM") }
                let report = try await ApplicationRestore.restoreFiles(snapshot, claim: volume[0], paths: path, target: target,
                                                                     existing: .fail, repository: repo)
                if global.json {
                    try printJSON(report)
                } else if !global.quiet {
                    for error in report.errors { printError(error) }
                    print("restored \(report.files) files, \(report.directories) directories, \(formatBytes(report.bytes)) of claim \(volume[0]) into \(target)")
                }
                return report.errors.isEmpty ? 0 : Exit.partial
            }
            var transforms: TransformSet?
            if let transform {
                guard let text = try? String(contentsOfFile: transform, encoding: .utf8) else {
                    throw CLIError.usage("cannot read the transforms file \(transform)")
                }
                do {
                    transforms = try TransformSet(yaml: text)
                } catch {
                    throw CLIError.usage("\(transform): \(error)")
                }
            }
            var options = ApplicationRestore.Options(
                targetNamespace: toNamespace, existing: existing, transforms: transforms, dryRun: dryRun,
                only: try selectors(only, "--only"), volumesOnly: volumesOnly,
                volumes: volume.isEmpty ? nil : Set(volume), volumeData: !noVolumes, volumeAccess: volumes.access,
                moverImage: volumes.image)
            options.keepExtraFiles = keepExtraFiles
            options.volumeWidth = volumes.parallel
            options.localSnapshots = !fromRepository
            options.hooks = try hooks.map { try CheckedFile($0).hooks(allowed: ["afterRestore"]) } ?? [:]
            let showProgress = !global.json && !global.quiet
            let report = try await cluster.withClient { client in
                try await ApplicationRestore(client: client, repository: repo, options: options)
                    .run(snapshot, progress: { line in if showProgress { printError(line) } })
            }
            if global.json {
                try printJSON(report)
            } else if !global.quiet {
                let rows = (report.objects + report.volumes).sorted { ($0.tier, $0.volume == nil ? 0 : 1) < ($1.tier, $1.volume == nil ? 0 : 1) }
                printTable(["TIER", "OBJECT", "RESULT", "DETAIL"], rows.map { row in
                    var detail = row.detail ?? ""
                    if let v = row.volume { detail = "\(v.files) files, \(formatBytes(v.bytes)) (\(v.method))" + (detail.isEmpty ? "" : "; " + detail) }
                    if let t = row.transforms { detail += (detail.isEmpty ? "" : "; ") + "transforms: " + t.joined(separator: ", ") }
                    return ["\(row.tier) \(RestoreOrder.tierNames[row.tier])", row.object, row.result, detail]
                })
                for p in report.phases {
                    print("\(p.blueprint) \(p.action)/\(p.phase)\(p.workload.map { " (\($0))" } ?? ""): \(p.result) in \(String(format: "%.1f", p.seconds)) s"
                          + (p.message.map { ": \($0)" } ?? ""))
                }
                if report.unlisted > 0 {
                    print("… and \(report.unlisted) more objects, counted below (the report lists claims, workloads, \(ObjectRestorer.Outcomes.defaultKeep) failures and \(ObjectRestorer.Outcomes.defaultKeep) other objects)")
                }
                let counts = report.objectCounts.merging(Dictionary(grouping: report.volumes, by: \.result).mapValues(\.count), uniquingKeysWith: +)
                print((report.dryRun ? "plan: " : "") + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                      + " — restore point \(String(report.restorePoint.prefix(8))) of \(report.sourceNamespace) into \(report.targetNamespace) in \(formatDuration(report.seconds))")
            }
            return report.failures > 0 ? Exit.partial : 0
        }
    }
}

struct RestorePointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restorepoints", abstract: "List restore points, of one namespace or all.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only restore points of this namespace.")
    var namespace: String?

    struct Row: Encodable {
        var id: String
        var time: Date
        var namespace: String
        var labelSelector: String?
        var objects: Int
        var volumes: [VolumeTransfer]
        var warnings: [String]
        var cairnVersion: String
    }

    func run() async throws {
        try await runReporting {
            let repo = try await global.open(readAhead: [.snapshots])
            try await repo.loadIndex()
            var rows: [Row] = []
            for point in try await RestorePoint.list(in: repo, namespace: namespace) {
                let m = try await RestorePoint.metadata(point.snapshot, from: repo)
                rows.append(Row(id: point.id, time: point.time, namespace: point.namespace, labelSelector: m.labelSelector,
                                objects: m.objects, volumes: m.volumes ?? [], warnings: m.warnings, cairnVersion: m.cairnVersion))
            }
            if global.json {
                try printJSON(rows)
            } else {
                printTable(["ID", "TIME", "NAMESPACE", "OBJECTS", "VOLUMES", "DATA"], rows.map {
                    [String($0.id.prefix(8)), formatDate($0.time), $0.namespace + ($0.labelSelector.map { " (\($0))" } ?? ""),
                     "\($0.objects)", "\($0.volumes.count)", formatBytes($0.volumes.map(\.bytes).reduce(0, +))]
                })
                print("\(rows.count) restore point(s)")
            }
            return 0
        }
    }
}
