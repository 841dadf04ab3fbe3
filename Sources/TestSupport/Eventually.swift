/// Async test helpers shared by the suites that talk to real servers.

/// Polls `condition` (errors count as "not yet") until it holds, or throws after `timeout`.
public func eventually(_ what: String, timeout: Duration = .seconds(120),
                       _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if (try? await condition()) == true { return }
        if ContinuousClock.now > deadline { throw FixtureError("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(250))
    }
}

/// The error of type `E` that `body` throws; nil when it throws nothing or something else.
public func caught<E: Error>(_ type: E.Type, _ body: () async throws -> Void) async -> E? {
    do {
        try await body()
        return nil
    } catch let error as E {
        return error
    } catch {
        return nil
    }
}
