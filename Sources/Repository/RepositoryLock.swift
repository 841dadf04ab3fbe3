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

    /// A lock is stale when it has not been refreshed for `staleAfter`, or when its process is gone
    /// (judged only on the host that wrote it).
    public func isStale(now: Date = Date(), hostname: String = ProcessInfo.processInfo.hostName) -> Bool {
        if now.timeIntervalSince(time) > RepositoryLock.staleAfter { return true }
        if self.hostname == hostname && kill(pid, 0) != 0 && errno == ESRCH { return true }
        return false
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
    public static func acquire(_ repository: Repository, exclusive: Bool, operation: String,
                               wait: TimeInterval = 0) async throws -> RepositoryLock {
        let info = LockInfo(time: Date(), exclusive: exclusive, hostname: ProcessInfo.processInfo.hostName,
                            pid: getpid(), username: ProcessInfo.processInfo.environment["USER"] ?? "",
                            operation: operation)
        let lock = RepositoryLock(repository: repository, info: info)
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let mine = try await lock.write(info)
            let conflict = try await lock.conflicting(own: mine)
            guard let conflict else {
                lock.startRefreshing()
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

    /// Runs `body` while holding a lock.
    public static func with<T: Sendable>(_ repository: Repository, exclusive: Bool, operation: String,
                                         wait: TimeInterval = 0, _ body: () async throws -> T) async throws -> T {
        let lock = try await acquire(repository, exclusive: exclusive, operation: operation, wait: wait)
        do {
            let result = try await body()
            await lock.release()
            return result
        } catch {
            await lock.release()
            throw error
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
