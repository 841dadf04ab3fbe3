/// The one "start N, start another as each finishes" task group: every fan-out in Cairn (index files,
/// pack checks, discovery, listing an application's kinds, restoring a tier of objects, multipart parts)
/// goes through these two functions, so the width is always bounded and a failure cancels the rest.
public enum Concurrent {
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
}
