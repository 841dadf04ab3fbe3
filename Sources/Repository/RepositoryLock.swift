import Foundation
import Storage
import Synchronization

/// What a lock file says: who holds it, since when, shared or exclusive.
public struct LockInfo: Codable, Sendable {
    public var time: Date
    public var exclusive: Bool
    public var hostname: String
    public var pid: Int32
    public var username: String
    public var operation: String
    /// Where `pid` means something: the boot and PID namespace of the writer (`boot-id/pid:[inode]`). A
    /// host name alone is not enough — a pod with the host's network (and name) has PIDs of its own.
    /// Absent in locks of older versions: those are judged by age only.
    public var processSpace: String?

    /// The boot and PID namespace this process runs in, or nil where /proc does not tell.
    public static let currentProcessSpace: String? = {
        guard let boot = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8),
              let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")
        else { return nil }
        return boot.trimmingCharacters(in: .whitespacesAndNewlines) + "/" + namespace
    }()

    /// A lock is stale when it has not been refreshed for `staleAfter`, or when its process is gone —
    /// judged only where its PID can be looked up: the same host, boot and PID namespace.
    public func isStale(now: Date = Date(), hostname: String = ProcessInfo.processInfo.hostName,
                        processSpace: String? = LockInfo.currentProcessSpace) -> Bool {
        if now.timeIntervalSince(time) > RepositoryLock.staleAfter { return true }
        guard self.hostname == hostname, let mine = processSpace, self.processSpace == mine else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    public var summary: String {
        "\(exclusive ? "exclusive" : "shared") lock for \(operation) by PID \(pid) on \(hostname) since \(time)"
    }
}

/// A held repository lock. Backups hold shared locks (many at once); prune and forget hold an exclusive
/// one. The lock file is rewritten every `refreshInterval` while held, so a lock older than
/// `staleAfter` belongs to a process that is gone and is ignored and removed.
public final class RepositoryLock: Sendable {
    public static let refreshInterval: TimeInterval = 5 * 60
    public static let staleAfter: TimeInterval = 30 * 60

    let repository: Repository
    let info: LockInfo
    let name = Mutex<String?>(nil)
    let refresher = Mutex<Task<Void, Never>?>(nil)

    init(repository: Repository, info: LockInfo) {
        self.repository = repository
        self.info = info
    }

    /// Takes a lock, waiting up to `wait` seconds for conflicting locks to go away.
    /// With `refreshing`, the lock renews itself until released (for holders that cannot be cancelled
    /// when renewal fails; `with` renews it and cancels its body instead).
    public static func acquire(_ repository: Repository, exclusive: Bool, operation: String,
                               wait: TimeInterval = 0, refreshing: Bool = true) async throws -> RepositoryLock {
        let info = LockInfo(time: Date(), exclusive: exclusive, hostname: ProcessInfo.processInfo.hostName,
                            pid: getpid(), username: ProcessInfo.processInfo.environment["USER"] ?? "",
                            operation: operation, processSpace: LockInfo.currentProcessSpace)
        let lock = RepositoryLock(repository: repository, info: info)
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let mine = try await lock.write(info)
            let conflict = try await lock.conflicting(own: mine)
            guard let conflict else {
                if refreshing { lock.startRefreshing() }
                return lock
            }
            try? await repository.removeFile(.locks, name: mine)
            lock.name.withLock { $0 = nil }
            if Date() >= deadline {
                throw RepositoryError(.locked,
                                      "the repository is locked: \(conflict.summary); wait for it to finish, or if that process no longer runs, run `cairn repo unlock`")
            }
            try await Task.sleep(nanoseconds: UInt64.random(in: 200_000_000...800_000_000))
        }
    }

    /// How often a held lock is renewed, and after how long without renewal others may take it as stale.
    public struct Timing: Sendable {
        public var refreshInterval: TimeInterval
        public var staleAfter: TimeInterval
        /// Between failed renewals.
        public var retryInterval: TimeInterval

        public init(refreshInterval: TimeInterval = RepositoryLock.refreshInterval,
                    staleAfter: TimeInterval = RepositoryLock.staleAfter, retryInterval: TimeInterval = 15) {
            self.refreshInterval = refreshInterval
            self.staleAfter = staleAfter
            self.retryInterval = retryInterval
        }

        public static let standard = Timing()
    }

    /// Runs `body` while holding a lock, renewing it as it runs. When the lock cannot be renewed before
    /// others would take it as stale — the storage keeps failing, or someone removed it — `body` is
    /// cancelled and this throws `.lockLost`: an operation never goes on unprotected (a prune elsewhere
    /// could delete the data a backup is writing against).
    public static func with<T: Sendable>(_ repository: Repository, exclusive: Bool, operation: String,
                                         wait: TimeInterval = 0, timing: Timing = .standard,
                                         _ body: () async throws -> T) async throws -> T {
        let lock = try await acquire(repository, exclusive: exclusive, operation: operation, wait: wait, refreshing: false)
        do {
            let result = try await withoutActuallyEscaping(body) { body in
                // `body` runs in exactly one child task while this task waits: never concurrently with anything
                // that shares its state.
                nonisolated(unsafe) let guarded = body
                return try await withThrowingTaskGroup(of: T?.self) { group in
                    group.addTask { try await guarded() }
                    group.addTask { try await lock.keepAlive(timing); return nil }
                    defer { group.cancelAll() }
                    while let next = try await group.next() {
                        if let value = next { return value }
                    }
                    throw CancellationError()
                }
            }
            await lock.release()
            return result
        } catch {
            await lock.release()
            throw error
        }
    }

    /// Renews the lock every `refreshInterval` until cancelled (then returns). Throws `.lockLost` when the
    /// lock file was removed by someone else, or when renewals kept failing until the lock was about to
    /// look stale (`staleAfter` less one retry interval since the last renewal).
    func keepAlive(_ timing: Timing) async throws {
        var renewed = ContinuousClock.now
        var wait = timing.refreshInterval
        while true {
            do {
                try await Task.sleep(for: .seconds(wait))
            } catch {
                return
            }
            let old = name.withLock { $0 }
            do {
                if let old {
                    do {
                        _ = try await repository.loadFile(.locks, name: old)
                    } catch let error as RepositoryError where error.code == .missing {
                        throw RepositoryError(.lockLost, "the repository lock of this \(info.operation) was removed by "
                                              + "someone else; it stopped so that nothing it needs is pruned meanwhile — run it again")
                    }
                }
                var fresh = info
                fresh.time = Date()
                _ = try await write(fresh)
                if let old { try? await repository.removeFile(.locks, name: old) }
                renewed = .now
                wait = timing.refreshInterval
            } catch let error as RepositoryError where error.code != .lockLost && !Task.isCancelled {
                let silent = ContinuousClock.now - renewed
                repository.logger.warning("lock.renew.failed", metadata: ["error": "\(error)"])
                if silent + .seconds(timing.retryInterval) >= .seconds(timing.staleAfter) {
                    var lost = RepositoryError(.lockLost, "the repository lock of this \(info.operation) could not be renewed "
                                               + "for \(Int(silent.components.seconds)) s; it stopped before others could take "
                                               + "the lock as stale — run it again when the storage answers")
                    lost.storage = error.storage
                    lost.underlying = error.description
                    throw lost
                }
                wait = timing.retryInterval
            }
        }
    }

    func write(_ info: LockInfo) async throws -> String {
        let data = try JSONEncoder.sorted.encode(info)
        let id = try await repository.saveFile(data, kind: .locks)
        name.withLock { $0 = id.hex }
        return id.hex
    }

    /// The first live lock that conflicts with ours; removes stale locks on the way.
    func conflicting(own: String) async throws -> LockInfo? {
        for other in try await repository.listFiles(.locks) where other != own {
            let theirs: LockInfo
            do {
                theirs = try JSONDecoder.iso.decode(LockInfo.self, from: await repository.loadFile(.locks, name: other))
            } catch let error as RepositoryError where error.code == .missing {
                continue   // released while we looked
            } catch {
                repository.logger.warning("lock.unreadable", metadata: ["cairn.lock": "\(other)"])
                continue
            }
            if theirs.isStale() {
                repository.logger.info("lock.stale.removed", metadata: ["cairn.lock": "\(theirs.summary)"])
                try? await repository.removeFile(.locks, name: other)
                continue
            }
            if theirs.exclusive || info.exclusive { return theirs }
        }
        return nil
    }

    func startRefreshing() {
        let task = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(Self.refreshInterval * 1e9))
                if Task.isCancelled { break }
                var fresh = info
                fresh.time = Date()
                let old = name.withLock { $0 }
                if (try? await write(fresh)) != nil, let old {
                    try? await repository.removeFile(.locks, name: old)
                }
            }
        }
        refresher.withLock { $0 = task }
    }

    /// Releases the lock (removes its file).
    public func release() async {
        refresher.withLock { $0?.cancel() }
        if let current = name.withLock({ $0 }) {
            try? await repository.removeFile(.locks, name: current)
        }
        name.withLock { $0 = nil }
    }

    /// Removes stale locks (or all locks with `all`); returns how many were removed.
    public static func removeStale(_ repository: Repository, all: Bool = false) async throws -> Int {
        try await removeAll(repository) { all || $0 == nil || $0!.isStale() }
    }

    /// Removes the locks `condition` picks (nil: an unreadable lock file); returns how many.
    public static func removeAll(_ repository: Repository, where condition: (LockInfo?) -> Bool) async throws -> Int {
        var removed = 0
        for name in try await repository.listFiles(.locks) {
            let data = try? await repository.loadFile(.locks, name: name)
            let info = data.flatMap { try? JSONDecoder.iso.decode(LockInfo.self, from: $0) }
            if condition(info) {
                try? await repository.removeFile(.locks, name: name)
                removed += 1
            }
        }
        return removed
    }
}

extension JSONDecoder {
    static var iso: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}
