import ArgumentParser
import Foundation
import Repository
import Snapshot

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Back up files and directories into a new snapshot.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Files and directories to back up.")
    var paths: [String]
    @Option(name: .long, help: "Tag the snapshot (repeatable).")
    var tag: [String] = []
    @Option(name: .long, help: "Compare against this snapshot instead of the latest one of the same host and paths.")
    var parent: String?
    @Flag(name: .long, help: "Read every file, even unchanged ones.")
    var force = false
    @Option(name: .long, help: "Host name recorded in the snapshot.")
    var host: String = ProcessInfo.processInfo.hostName

    struct Output: Encodable {
        var snapshot: String
        var parent: String?
        var summary: BackupSummary
        var errors: [String]
    }

    func run() async throws {
        try await runReporting {
            let repo = try await global.open()
            let absolute = paths.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            var parentSnapshot: SnapshotManifest?
            if let parent {
                parentSnapshot = try await SnapshotFiles.find(parent, in: repo)
            } else if !force {
                parentSnapshot = try await SnapshotFiles.all(in: repo).snapshots
                    .last { $0.hostname == host && $0.paths == absolute }
            }
            let progress = BackupProgress()
            let display = ProgressDisplay(enabled: global.showProgress) {
                let p = progress.snapshot
                return (p.bytes, p.scanDone ? p.totalBytes : nil, p.files)
            }
            let archiver = Archiver(repository: repo, progress: progress)
            let result: BackupResult
            do {
                result = try await archiver.run(BackupOptions(paths: absolute, parent: parentSnapshot, tags: tag,
                                                              hostname: host))
            } catch {
                display.stop()
                throw error
            }
            display.stop()
            let s = result.snapshot.summary ?? BackupSummary()
            if global.json {
                try printJSON(Output(snapshot: result.snapshot.id, parent: parentSnapshot?.id, summary: s,
                                     errors: result.errors))
            } else {
                for error in result.errors { printError("skipped \(error)") }
                if !global.quiet {
                    if let parentSnapshot { print("parent snapshot \(parentSnapshot.shortID)") }
                    print("files: \(s.filesNew) new, \(s.filesChanged) changed, \(s.filesUnmodified) unmodified; \(s.directories) directories")
                    print("read \(formatBytes(s.bytesRead)) of \(formatBytes(s.bytesTotal)), added \(formatBytes(s.bytesAdded)) to the repository in \(formatDuration(s.seconds))")
                    print("snapshot \(result.snapshot.shortID) saved")
                }
            }
            if !result.errors.isEmpty {
                if !global.json {
                    printError("\(result.errors.count) file(s) could not be read and are not in the snapshot")
                }
                return Exit.partial
            }
            return 0
        }
    }
}

struct SnapshotsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshots", abstract: "List snapshots.")
    @OptionGroup var global: GlobalOptions

    struct Row: Encodable {
        var id: String
        var time: Date
        var host: String
        var paths: [String]
        var tags: [String]
        var tree: String
        var parent: String?
        var summary: BackupSummary?
    }

    func run() async throws {
        try await runReporting {
            let repo = try await global.open(readAhead: [.snapshots])
            let (snapshots, errors) = try await SnapshotFiles.all(in: repo)
            for error in errors { printError("unreadable snapshot: \(error)") }
            if global.json {
                try printJSON(snapshots.map {
                    Row(id: $0.id, time: $0.time, host: $0.hostname, paths: $0.paths, tags: $0.tags, tree: $0.tree.hex,
                        parent: $0.parent, summary: $0.summary)
                })
            } else {
                printTable(["ID", "Time", "Host", "Tags", "Size", "Paths"], snapshots.map {
                    [$0.shortID, formatDate($0.time), $0.hostname, $0.tags.joined(separator: ","),
                     formatBytes($0.summary?.bytesTotal ?? 0), $0.paths.joined(separator: " ")]
                })
                print("\(snapshots.count) snapshot(s)")
            }
            return errors.isEmpty ? 0 : Exit.partial
        }
    }
}

struct LsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the files of a snapshot.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Snapshot ID (a unique prefix) or `latest`.")
    var snapshot: String
    @Argument(help: "Only below this path inside the snapshot.")
    var path: String?
    @Flag(name: .short, help: "Long listing: type, mode, size, time.")
    var long = false

    struct Row: Encodable {
        var path: String
        var type: String
        var mode: String
        var size: UInt64
        var mtime: Date
        var linkTarget: String?
    }

    func run() async throws {
        try await runReporting {
            let repo = try await global.open()
            try await repo.loadIndex()
            let manifest = try await SnapshotFiles.find(snapshot, in: repo)
            let prefix = path.map { "/" + $0.split(separator: "/").joined(separator: "/") } ?? ""
            var rows: [Row] = []
            var stack: [(BlobID, String)] = [(manifest.tree, "")]
            while let (id, dir) = stack.popLast() {
                let tree = try await repo.loadTree(id)
                for node in tree.nodes.reversed() {
                    let p = dir + "/" + node.name
                    let inside = prefix.isEmpty || p == prefix || p.hasPrefix(prefix + "/")
                    let onTheWay = prefix.hasPrefix(p + "/")
                    guard inside || onTheWay else { continue }
                    if inside {
                        rows.append(Row(path: p, type: node.type.rawValue, mode: String(node.mode, radix: 8), size: node.size,
                                        mtime: Date(timeIntervalSince1970: Double(node.mtime) / 1e9),
                                        linkTarget: node.linkTarget))
                    }
                    if let subtree = node.subtree { stack.append((subtree, p)) }
                }
            }
            rows.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
            if global.json {
                try printJSON(rows)
            } else {
                for r in rows {
                    if long {
                        let link = r.linkTarget.map { " -> \($0)" } ?? ""
                        print("\(r.type.padding(toLength: 8, withPad: " ", startingAt: 0)) \(r.mode.padding(toLength: 5, withPad: " ", startingAt: 0)) \(String(r.size).padding(toLength: 12, withPad: " ", startingAt: 0)) \(formatDate(r.mtime)) \(r.path)\(link)")
                    } else {
                        print(r.path)
                    }
                }
            }
            return 0
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Restore a snapshot, or parts of it, into a directory.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Snapshot ID (a unique prefix) or `latest`.")
    var snapshot: String
    @Option(name: .long, help: "Directory to restore into.")
    var target: String
    @Option(name: .long, help: "Restore only this path inside the snapshot (repeatable), as `cairn ls` shows it.")
    var include: [String] = []
    @Option(name: .long, help: "What to do with files that already exist in the target: fail (default: stop before writing), skip, overwrite.")
    var existing: String = "fail"

    func run() async throws {
        try await runReporting {
            guard let policy = ExistingPolicy(rawValue: existing) else {
                throw CLIError.usage("--existing must be fail, skip or overwrite")
            }
            let repo = try await global.open()
            let manifest = try await SnapshotFiles.find(snapshot, in: repo)
            let restorer = Restorer(repository: repo)
            let display = ProgressDisplay(enabled: global.showProgress) {
                (restorer.bytesDone.withLock { $0 }, manifest.summary?.bytesTotal, 0)
            }
            let report: RestoreReport
            do {
                report = try await restorer.run(manifest, options: RestoreOptions(target: target, include: include,
                                                                                   existing: policy))
            } catch {
                display.stop()
                throw error
            }
            display.stop()
            if global.json {
                try printJSON(report)
            } else {
                for error in report.errors { printError("not restored: \(error)") }
                if !global.quiet {
                    print("restored \(report.files) files, \(report.directories) directories, \(report.links) symlinks (\(formatBytes(report.bytes))) from snapshot \(manifest.shortID) into \(target)\(report.skipped > 0 ? "; skipped \(report.skipped) existing" : "")")
                }
            }
            if !report.errors.isEmpty {
                if !global.json { printError("\(report.errors.count) item(s) could not be restored intact") }
                return Exit.partial
            }
            return 0
        }
    }
}
