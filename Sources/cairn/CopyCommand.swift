import ArgumentParser
import Concurrent
import Foundation
import Protection
import Repository
import Snapshot
import Storage

/// The repository snapshots are copied from (`cairn repo copy`, `cairn repo init --paired-with`): its own
/// location, endpoint and password; S3 credentials from the same environment as the destination's.
struct SourceRepositoryOptions: ParsableArguments {
    @Option(name: .long, help: "The repository to copy from: a directory, or s3://BUCKET/PREFIX.")
    var fromRepo: String

    @Option(name: .long, help: "S3-compatible endpoint of the source. Default: the destination's (--s3-endpoint).")
    var fromS3Endpoint: String?

    @Option(name: .long, help: "Read the source's password from this file. Default: $CAIRN_FROM_PASSWORD or a prompt.")
    var fromPasswordFile: String?

    func open(like destination: GlobalOptions) async throws -> Repository {
        var arguments = ["--repo", fromRepo]
        if let endpoint = fromS3Endpoint ?? destination.s3Endpoint { arguments += ["--s3-endpoint", endpoint] }
        if let region = destination.s3Region { arguments += ["--s3-region", region] }
        if let ca = destination.s3CaFile { arguments += ["--s3-ca-file", ca] }
        let options = try GlobalOptions.parse(arguments)
        let password: String
        if let text = ProcessInfo.processInfo.environment["CAIRN_FROM_PASSWORD"] {
            password = text
        } else if let fromPasswordFile {
            password = try readPasswordFile(fromPasswordFile)
        } else {
            password = try promptPassword("Password of the source repository: ")
        }
        return try await Repository.open(store: try await options.store(), password: password)
    }
}

extension RepoCommand {
    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy snapshots and restore points into another repository.",
            discussion: """
                Copies from --from-repo into --repo only the data --repo lacks, re-encrypted under its key. \
                An empty --repo location is created for the copies (paired with the source: same chunker and \
                blob IDs, its own encryption key and password); an existing one must have been created so. \
                A snapshot appears in --repo only once all its data is there; an interrupted copy resumes \
                where it stopped. Snapshots copied before are not copied again.
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var source: SourceRepositoryOptions
        @Option(name: .long, help: "Only restore points of this namespace.")
        var namespace: String?
        @Option(name: .long, help: "Only snapshots with this tag (repeatable: any of them).")
        var tag: [String] = []
        @Argument(help: "Snapshot IDs (prefixes) or `latest`. Default: every snapshot that matches the filters.")
        var snapshots: [String] = []

        struct Output: Encodable {
            var copied: [SnapshotCopier.Copied]
            var progress: SnapshotCopier.Progress
            var created: Bool
        }

        func run() async throws {
            try await runReporting {
                try await Self.copy(global: global, source: source) { from in
                    var chosen: [SnapshotManifest]
                    if snapshots.isEmpty {
                        chosen = try await SnapshotFiles.all(in: from).snapshots
                    } else {
                        chosen = []
                        for reference in snapshots { chosen.append(try await SnapshotFiles.find(reference, in: from)) }
                    }
                    if let namespace {
                        chosen = chosen.filter { $0.tags.contains(RestorePoint.tag) && $0.tags.contains(RestorePoint.namespaceTag(namespace)) }
                    }
                    if !tag.isEmpty { chosen = chosen.filter { !Set($0.tags).isDisjoint(with: tag) } }
                    return chosen
                }
                return 0
            }
        }

        /// Opens both repositories (creating the destination paired when its location is empty), copies what
        /// `choose` picks from the source, and reports it: `cairn repo copy` and `cairn app export`.
        static func copy(global: GlobalOptions, source: SourceRepositoryOptions,
                         choose: (Repository) async throws -> [SnapshotManifest]) async throws {
            let from = try await source.open(like: global)
            // Chosen first: nothing is created at the destination for a choice that cannot be made.
            let chosen = try await choose(from)
            let store = try await global.store()
            let password = try global.password(prompt: "Password of the destination repository: ")
            let (to, created) = try await Self.openOrCreate(store: store, password: password, pairedWith: from)
            let copier = try SnapshotCopier(source: from, destination: to)
            let latest = Locked(SnapshotCopier.Progress())
            let display = ProgressDisplay(enabled: global.showProgress) {
                let p = latest.withLock { $0 }
                return (Int(p.transferredBytes), nil, p.snapshotsDone)
            }
            let report: SnapshotCopier.Report
            do {
                report = try await RepositoryLock.with(from, exclusive: false, operation: "copy to \(store.location)", wait: 30) {
                    try await RepositoryLock.with(to, exclusive: false, operation: "copy from \(from.store.location)", wait: 30) {
                        try await copier.copy(chosen) { p in latest.withLock { $0 = p } }
                    }
                }
            } catch {
                display.stop()
                throw error
            }
            display.stop()
            let p = report.progress
            if global.json {
                try printJSON(Output(copied: report.copied, progress: p, created: created))
            } else if !global.quiet {
                if created { print("created repository \(to.config.id.prefix(8)) at \(store.location), paired with \(from.config.id.prefix(8))") }
                for c in report.copied {
                    print("snapshot \(c.original.prefix(8)) → \(c.copy.prefix(8))\(c.existed ? " (copied before)" : "")")
                }
                print("\(report.copied.count) snapshot(s); \(formatBytes(Int(p.totalBytes))) in them; read \(formatBytes(Int(p.readBytes))), sent \(formatBytes(Int(p.transferredBytes))) (\(report.blobsSent) blobs) in \(formatDuration(p.seconds))")
            }
        }

        /// Opens the destination, or creates it paired with the source where the location holds no repository.
        static func openOrCreate(store: any BlobStore, password: String, pairedWith source: Repository) async throws -> (Repository, Bool) {
            do {
                return (try await Repository.open(store: store, password: password), false)
            } catch let error as RepositoryError where error.code == .notARepository {
                return (try await Repository.initialize(store: store, password: password, pairedWith: source), true)
            }
        }
    }
}

/// `cairn app export NAMESPACE`: an application's newest restore point (or all of them) into another
/// repository, as `cairn repo copy` does — for people and pipelines moving an application elsewhere.
struct AppExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Copy an application's restore point into another repository (only what it lacks, re-encrypted).",
        discussion: """
            Reads the restore points of NAMESPACE in --from-repo and copies the newest (all with --all) into \
            --repo, as `cairn repo copy --namespace` does: an empty --repo location is created paired with the \
            source; a restore point appears there only once all its data is. Restore it there with `cairn app \
            restore` or a Profile on that repository (docs/operations.md, "Disaster recovery and mobility").
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var source: SourceRepositoryOptions
    @Argument(help: "The application's namespace (as its restore points record it).")
    var namespace: String
    @Flag(name: .long, help: "Every restore point of the application, not only the newest.")
    var all = false

    func run() async throws {
        try await runReporting {
            try await RepoCommand.Copy.copy(global: global, source: source) { from in
                let points = try await RestorePoint.list(in: from, namespace: namespace)
                guard let newest = points.last else {
                    throw CLIError("the source repository holds no restore point of namespace \(namespace): see `cairn app list --repo` of it")
                }
                return all ? points.map(\.snapshot) : [newest.snapshot]
            }
            return 0
        }
    }
}
