/// Async test helpers shared by the suites that talk to real servers.

/// Thrown by a condition of `eventually` to stop waiting at once: what is awaited can no longer happen
/// (the pod failed), so waiting out the deadline would only hide why.
public struct GiveUp: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` without holding a thread (errors count as "not yet", except `GiveUp`) until it holds,
/// or throws after `timeout`. The timeout's error says what was last seen: the condition's last error, and
/// `explain`'s answer (what the condition observed, or the state of the objects awaited).
public func eventually(_ what: String, timeout: Duration = .seconds(120),
                       explain: (() async -> String)? = nil,
                       _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if try await condition() { return }
            lastError = nil
        } catch let stop as GiveUp {
            throw stop
        } catch {
            lastError = error
        }
        if ContinuousClock.now > deadline {
            var message = "timed out after \(timeout) waiting for \(what)"
            if let lastError { message += "; last error: \(lastError)" }
            if let explain { message += "; seen: \(await explain())" }
            throw FixtureError(message)
        }
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
