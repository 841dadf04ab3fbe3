/// The one "start N, start another as each finishes" task group: every fan-out in Cairn (index files,
/// pack checks, discovery, listing an application's kinds, restoring a tier of objects, multipart parts,
/// a file's chunks) goes through these functions, so the width is always bounded and a failure cancels the
/// rest.
public enum Concurrent {
    /// Runs `body` to its end even when the calling task is cancelled (in a task of its own that does not
    /// inherit the cancellation): clean-up that must reach a server — a mover pod deleted, a lease handed
    /// over — after the work it cleans up after was cancelled.
    public static func uncancelled<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
        await Task { await body() }.value
    }

    /// Runs `work` for each element, at most `width` at once, and hands each result to `collect` in the
    /// calling task as it finishes (completion order; `collect` needs no lock). The first error thrown by
    /// `work` or `collect` cancels the work still running and is rethrown.
    public static func forEach<Element: Sendable, Result: Sendable>(
        _ elements: some Sequence<Element>, width: Int,
        _ work: @escaping @Sendable (Element) async throws -> Result,
        collect: (Result) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Result.self) { group in
            var pending = elements.makeIterator()
            var running = 0
            func startNext() -> Bool {
                guard let element = pending.next() else { return false }
                group.addTask { try await work(element) }
                running += 1
                return true
            }
            while running < max(1, width), startNext() {}
            while running > 0, let result = try await group.next() {
                running -= 1
                try await collect(result)
                _ = startNext()
            }
        }
    }

    /// `work` over `elements`, at most `width` at once; the results in the order of `elements`.
    public static func map<Element: Sendable, Result: Sendable>(
        _ elements: some Collection<Element>, width: Int,
        _ work: @escaping @Sendable (Element) async throws -> Result
    ) async throws -> [Result] {
        var results = [Result?](repeating: nil, count: elements.count)
        try await forEach(Array(elements.enumerated()), width: width, { item in (item.offset, try await work(item.element)) }) {
            results[$0.0] = $0.1
        }
        return results.map { $0! }
    }

    /// A window over elements produced one at a time, for streams whose order matters (a file's chunks stored
    /// or read back): `produce` hands each element to `emit`; `work` runs on at most `width` elements at
    /// once; `collect` receives the results in the order the elements were emitted, in the calling task.
    /// `emit` waits while `width` elements are emitted but not yet collected, so memory stays bounded
    /// whatever the length of the stream. The first error cancels the work still running and is rethrown.
    /// With `inline`, `work` runs in the calling task, one element at a time, with no task per element (for
    /// elements too small to be worth one, when the caller runs several streams at once).
    public static func ordered<Element: Sendable, Result: Sendable>(
        width: Int, inline: Bool = false,
        produce: (_ emit: (Element) async throws -> Void) async throws -> Void,
        _ work: @escaping @Sendable (Element) async throws -> Result,
        collect: (Result) async throws -> Void
    ) async throws {
        // `collect` is only called from `emit`, inside `produce`, in this task: it never escapes.
        try await withoutActuallyEscaping(collect) { collect in
        if inline {
            try await produce { element in try await collect(try await work(element)) }
            return
        }
        let width = max(1, width)
        try await withThrowingTaskGroup(of: (Int, Result).self) { group in
            var emitted = 0
            var collected = 0
            var ready: [Int: Result] = [:]
            func collectOne() async throws {
                guard let (index, result) = try await group.next() else { return }
                ready[index] = result
                while let next = ready.removeValue(forKey: collected) {
                    collected += 1
                    try await collect(next)
                }
            }
            try await produce { element in
                while emitted - collected >= width { try await collectOne() }
                let index = emitted
                emitted += 1
                group.addTask { (index, try await work(element)) }
            }
            while collected < emitted { try await collectOne() }
        }
        }
    }
}
