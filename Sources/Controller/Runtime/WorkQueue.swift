import Foundation

/// The reconcilers' queue of keys, with the guarantees of client-go's work queue:
///
/// - a key waits in the queue at most once, however often it is added;
/// - a key is handed to one worker at a time: added again while a worker has it, it is queued again
///   only when that worker says `done`, so no two passes over one object ever run at once;
/// - `add(_:after:)` delays a key (the earliest request wins), `retry` delays it with exponential
///   back-off per key, `forget` resets the back-off after a good pass;
/// - `shutDown` wakes every waiting worker with nil.
public actor WorkQueue<Key: Hashable & Sendable> {
    private var queue: [Key] = []
    private var head = 0
    private var queued: Set<Key> = []
    private var processing: Set<Key> = []
    private var dirty: Set<Key> = []
    private var waiters: [CheckedContinuation<Key?, Never>] = []
    private var timers: [Key: (at: ContinuousClock.Instant, task: Task<Void, Never>)] = [:]
    private var failures: [Key: Int] = [:]
    private var closed = false
    let baseDelay: Duration
    let maxDelay: Duration

    public init(baseDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(300)) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Number of keys waiting (not counting delayed ones or those being processed).
    public var count: Int { queue.count - head }

    public func add(_ key: Key) {
        guard !closed else { return }
        if processing.contains(key) {
            dirty.insert(key)
            return
        }
        guard queued.insert(key).inserted else { return }
        if !waiters.isEmpty {
            queued.remove(key)
            processing.insert(key)
            waiters.removeFirst().resume(returning: key)
            return
        }
        queue.append(key)
    }

    /// Adds `key` after `delay`, unless it is already due sooner.
    public func add(_ key: Key, after delay: Duration) {
        guard !closed else { return }
        if delay <= .zero { return add(key) }
        let at = ContinuousClock.now + delay
        if let existing = timers[key], existing.at <= at { return }
        timers[key]?.task.cancel()
        let task = Task { [weak self] in
            try? await Task.sleep(until: at, clock: .continuous)
            guard !Task.isCancelled else { return }
            await self?.fire(key, at: at)
        }
        timers[key] = (at, task)
    }

    /// When a delayed key is due (nil: not waiting on a delay).
    func due(_ key: Key) -> ContinuousClock.Instant? { timers[key]?.at }

    private func fire(_ key: Key, at: ContinuousClock.Instant) {
        guard timers[key]?.at == at else { return }
        timers[key] = nil
        add(key)
    }

    /// Adds `key` again after a back-off that doubles with each consecutive failure of that key.
    public func retry(_ key: Key) {
        let n = failures[key, default: 0]
        failures[key] = n + 1
        let delay = min(maxDelay, baseDelay * (1 << min(n, 20)))
        add(key, after: delay)
    }

    /// Resets the back-off of `key` (after a pass that succeeded).
    public func forget(_ key: Key) {
        failures[key] = nil
    }

    /// The next key to process, waiting for one; nil once the queue is shut down.
    public func next() async -> Key? {
        if closed { return nil }
        if head < queue.count {
            let key = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            queued.remove(key)
            processing.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// Marks the pass over `key` finished; a key added meanwhile is queued again now.
    public func done(_ key: Key) {
        processing.remove(key)
        if dirty.remove(key) != nil { add(key) }
    }

    /// Stops handing out keys; waiting workers get nil.
    public func shutDown() {
        closed = true
        for (_, timer) in timers { timer.task.cancel() }
        timers = [:]
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters = []
    }

    public var isShutDown: Bool { closed }
}
