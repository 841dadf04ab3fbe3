import ArgumentParser
import Foundation
import Repository
import Snapshot

struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove snapshots by ID or by a retention policy; with --prune also delete their data.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Snapshot IDs to remove.")
    var snapshots: [String] = []
    @Option(name: .long, help: "Keep the newest N snapshots.") var keepLast = 0
    @Option(name: .long, help: "Keep the newest snapshot of each of the last N hours.") var keepHourly = 0
    @Option(name: .long, help: "Keep the newest snapshot of each of the last N days.") var keepDaily = 0
    @Option(name: .long, help: "Keep the newest snapshot of each of the last N weeks.") var keepWeekly = 0
    @Option(name: .long, help: "Keep the newest snapshot of each of the last N months.") var keepMonthly = 0
    @Option(name: .long, help: "Keep the newest snapshot of each of the last N years.") var keepYearly = 0
    @Flag(name: .long, help: "Delete data no snapshot uses any more (and repack mostly unused packs).")
    var prune = false
    @Flag(name: .long, help: "Show what would be removed; change nothing.")
    var dryRun = false

    struct Output: Encodable {
        var keep: [Item]
        var remove: [Item]
        var prune: PruneReport?
    }

    struct Item: Encodable {
        var id: String
        var time: Date
        var reasons: [String]
    }

    func run() async throws {
        try await runReporting {
            let policy = ForgetPolicy(last: keepLast, hourly: keepHourly, daily: keepDaily, weekly: keepWeekly,
                                      monthly: keepMonthly, yearly: keepYearly)
            guard !policy.isEmpty || !snapshots.isEmpty else {
                throw CLIError.usage("give snapshot IDs or at least one --keep-* option; forget never removes everything by default")
            }
            let repo = try await global.open()
            return try await RepositoryLock.with(repo, exclusive: true, operation: "forget", wait: 30) {
                let (all, errors) = try await SnapshotFiles.all(in: repo)
                var remove: [SnapshotManifest] = []
                var keep: [Item] = []
                if !snapshots.isEmpty {
                    for ref in snapshots { remove.append(try await SnapshotFiles.find(ref, in: repo)) }
                } else {
                    for d in policy.apply(to: all) {
                        if d.keep {
                            keep.append(Item(id: d.snapshot.id, time: d.snapshot.time, reasons: d.reasons))
                        } else {
                            remove.append(d.snapshot)
                        }
                    }
                }
                // Snapshots under object-lock retention cannot be forgotten yet.
                let protected = try await repo.protectedFiles(.snapshots)
                if !protected.isEmpty {
                    let held = remove.filter { protected[$0.id] != nil }
                    remove.removeAll { protected[$0.id] != nil }
                    for h in held {
                        keep.append(Item(id: h.id, time: h.time,
                                         reasons: ["protected until \(formatDate(protected[h.id]!))"]))
                    }
                }
                if !global.json && !global.quiet {
                    for k in keep { print("keep   \(k.id.prefix(8))  \(formatDate(k.time))  \(k.reasons.joined(separator: ", "))") }
                    for r in remove { print("remove \(r.shortID)  \(formatDate(r.time))") }
                }
                if !dryRun {
                    for r in remove { try await repo.removeFile(.snapshots, name: r.id) }
                }
                var report: PruneReport?
                if prune {
                    if !errors.isEmpty {
                        throw CLIError("\(errors.count) snapshot(s) cannot be read, so prune cannot know which data they need; nothing was pruned. Run `cairn repo check`.")
                    }
                    let kept = all.filter { s in !remove.contains { $0.id == s.id } }
                    report = try await runPrune(repo, snapshots: kept, dryRun: dryRun, quiet: global.quiet || global.json)
                }
                if global.json {
                    try printJSON(Output(keep: keep, remove: remove.map { Item(id: $0.id, time: $0.time, reasons: []) },
                                         prune: report))
                }
                return 0
            }
        }
    }
}

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Delete data no snapshot uses and repack mostly unused packs.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Show what would be done; change nothing.")
    var dryRun = false
    @Option(name: .long, help: "Repack packs with more than this fraction of unused bytes (0–1).")
    var maxUnused = 0.5

    func run() async throws {
        try await runReporting {
            guard (0...1).contains(maxUnused) else { throw CLIError.usage("--max-unused must be between 0 and 1") }
            let repo = try await global.open()
            return try await RepositoryLock.with(repo, exclusive: true, operation: "prune", wait: 30) {
                let (all, errors) = try await SnapshotFiles.all(in: repo)
                if !errors.isEmpty {
                    throw CLIError("\(errors.count) snapshot(s) cannot be read, so prune cannot know which data they need; nothing was pruned. Run `cairn repo check`.")
                }
                let report = try await runPrune(repo, snapshots: all, dryRun: dryRun, quiet: global.quiet || global.json,
                                                maxUnused: maxUnused)
                if global.json { try printJSON(report) }
                return 0
            }
        }
    }
}

func runPrune(_ repo: Repository, snapshots: [SnapshotManifest], dryRun: Bool, quiet: Bool,
              maxUnused: Double = 0.5) async throws -> PruneReport {
    let report = try await repo.pruneUnused(keeping: snapshots, maxUnused: maxUnused, dryRun: dryRun)
    if !quiet {
        print("\(dryRun ? "would delete" : "deleted") \(report.packsDeleted) unused pack(s) and \(report.leftoverPacksDeleted) leftover pack(s); repacked \(report.packsRepacked) into \(report.packsWritten); removed \(report.blobsRemoved) blob(s), freeing \(formatBytes(report.bytesFreed))")
    }
    return report
}
