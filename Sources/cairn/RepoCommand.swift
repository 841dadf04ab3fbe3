import Concurrent
import ArgumentParser
import Foundation
import Repository
import Snapshot
import Storage

struct RepoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repo", abstract: "Create, check and manage a repository.",
        subcommands: [Init.self, Check.self, Copy.self, Key.self, Unlock.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a new repository.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "zstd level for stored data, 0 (off) to 19. Higher is smaller and slower.")
        var compressionLevel = RepositoryConfig.defaultCompressionLevel
        @Option(name: .long, help: ArgumentHelp("S3 only: write every object with an object-lock retention of this many days (the bucket must have object lock). Snapshots younger than that cannot be forgotten."))
        var protectionDays: Int?

        func run() async throws {
            try await runReporting {
                guard (0...19).contains(compressionLevel) else {
                    throw CLIError.usage("--compression-level must be between 0 and 19")
                }
                if let protectionDays, protectionDays < 1 {
                    throw CLIError.usage("--protection-days must be at least 1")
                }
                let store = try await global.store(protectionDays: protectionDays)
                var password = try global.password(prompt: "New repository password: ")
                if ProcessInfo.processInfo.environment["CAIRN_PASSWORD"] == nil && global.passwordFile == nil {
                    let again = try promptPassword("Repeat the password: ")
                    guard again == password else { throw CLIError("the passwords differ; nothing was created") }
                }
                let repo = try await Repository.initialize(store: store, password: password,
                                                          config: .new(compressionLevel: compressionLevel))
                password = ""
                if global.json {
                    try printJSON(["id": repo.config.id, "location": store.location])
                } else if !global.quiet {
                    print("created repository \(repo.config.id.prefix(8)) at \(store.location)")
                    print("keep the password safe: without it the data cannot be read by anyone")
                }
                return 0
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the repository's structure, or with --read-data every byte of it.")
        @OptionGroup var global: GlobalOptions
        @Flag(name: .long, help: "Read, decrypt and verify every blob.")
        var readData = false

        struct Output: Encodable {
            var ok: Bool
            var errors: [String]
            var warnings: [String]
            var damaged: [SnapshotWalker.Damage]
            var snapshots: Int
            var packs: Int
            var blobs: Int
            var indexFiles: Int
        }

        func run() async throws {
            try await runReporting {
                let repo = try await global.open()
                return try await RepositoryLock.with(repo, exclusive: false, operation: "check", wait: 30) {
                    let start = Date()
                    let progressCounter = Locked(0)
                    let display = ProgressDisplay(enabled: global.showProgress && readData) {
                        (progressCounter.value, nil, 0)
                    }
                    var report = try await repo.check(readData: readData) { done, _ in progressCounter.set(done) }
                    display.stop()
                    let (snapshots, snapshotErrors) = try await SnapshotFiles.all(in: repo)
                    report.errors += snapshotErrors
                    let damage = await SnapshotWalker(repository: repo).damage(snapshots, damaged: report.damagedBlobs)
                    let ok = report.errors.isEmpty && damage.isEmpty
                    if global.json {
                        try printJSON(Output(ok: ok, errors: report.errors, warnings: report.warnings, damaged: damage,
                                             snapshots: snapshots.count, packs: report.packs, blobs: report.blobs,
                                             indexFiles: report.indexFiles))
                    } else {
                        for warning in report.warnings { printError("warning: \(warning)") }
                        for error in report.errors { printError("error: \(error)") }
                        for d in damage {
                            printError("damaged: snapshot \(d.snapshot.prefix(8)) \(d.path): \(d.reason)")
                        }
                        if !global.quiet {
                            let what = readData ? "structure and all data (\(formatBytes(report.bytesRead)))" : "structure"
                            print("checked \(what): \(report.indexFiles) index files, \(report.packs) packs, \(report.blobs) blobs, \(snapshots.count) snapshots in \(formatDuration(Date().timeIntervalSince(start)))")
                            if ok {
                                print("no errors were found")
                            } else {
                                let files = Set(damage.map { "\($0.snapshot)\($0.path)" }).count
                                print("the repository is damaged: \(report.errors.count) problem(s); \(files) file(s) in \(Set(damage.map(\.snapshot)).count) snapshot(s) cannot be restored intact (listed above). Other files still restore.")
                            }
                        }
                    }
                    return ok ? 0 : Exit.damaged
                }
            }
        }
    }

    struct Key: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Manage the passwords that open the repository.", subcommands: [Add.self, List.self, Remove.self])

        struct Add: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add a password.")
            @OptionGroup var global: GlobalOptions
            @Option(name: .long, help: "Read the new password from this file. Default: $CAIRN_NEW_PASSWORD or a prompt.")
            var newPasswordFile: String?

            func run() async throws {
                try await runReporting {
                    let repo = try await global.open(readAhead: [])
                    let newPassword: String
                    if let env = ProcessInfo.processInfo.environment["CAIRN_NEW_PASSWORD"] {
                        newPassword = env
                    } else if let file = newPasswordFile {
                        newPassword = try readPasswordFile(file)
                    } else {
                        newPassword = try promptPassword("New password: ")
                        guard try promptPassword("Repeat the new password: ") == newPassword else {
                            throw CLIError("the passwords differ; no key was added")
                        }
                    }
                    let name = try await repo.addKey(password: newPassword)
                    if global.json { try printJSON(["key": name]) } else if !global.quiet { print("added key \(name.prefix(8))") }
                    return 0
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the keys.")
            @OptionGroup var global: GlobalOptions

            struct Row: Encodable { var key: String; var created: Date; var host: String; var user: String; var current: Bool }

            func run() async throws {
                try await runReporting {
                    let repo = try await global.open(readAhead: [])
                    let rows = try await repo.listKeys().map {
                        Row(key: $0.name, created: $0.created, host: $0.hostname, user: $0.username,
                            current: $0.name == repo.keyName)
                    }
                    if global.json {
                        try printJSON(rows)
                    } else {
                        printTable(["", "key", "created", "host", "user"], rows.map {
                            [$0.current ? "*" : "", String($0.key.prefix(8)), formatDate($0.created), $0.host, $0.user]
                        })
                    }
                    return 0
                }
            }
        }

        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a key (not the one in use).")
            @OptionGroup var global: GlobalOptions
            @Argument(help: "The key's name or a unique prefix of it.")
            var key: String

            func run() async throws {
                try await runReporting {
                    let repo = try await global.open(readAhead: [])
                    try await repo.removeKey(name: key)
                    if !global.quiet && !global.json { print("removed key \(key)") }
                    return 0
                }
            }
        }
    }

    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove stale locks (of processes that are gone), or with --all every lock.")
        @OptionGroup var global: GlobalOptions
        @Flag(name: .long, help: "Remove all locks, even of running processes.")
        var all = false

        func run() async throws {
            try await runReporting {
                let repo = try await global.open(readAhead: [])
                let n = try await RepositoryLock.removeStale(repo, all: all)
                if !global.quiet { print("removed \(n) lock(s)") }
                return 0
            }
        }
    }
}

extension Locked where Value == Int {
    var value: Int { withLock { $0 } }
    func set(_ v: Int) { withLock { $0 = v } }
}
