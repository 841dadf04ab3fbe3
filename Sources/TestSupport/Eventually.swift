/// Async test helpers shared by the suites that talk to real servers.

/// Thrown by a condition of `eventually` to stop waiting at once: what is awaited can no longer happen
/// (the pod failed), so waiting out the deadline would only hide why.
public struct GiveUp: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` without holding a thread (errors count as "not yet", except `GiveUp`) until it holds,
/// or throws after `timeout`.
public func eventually(_ what: String, timeout: Duration = .seconds(120),
                       _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        do {
            if try await condition() { return }
        } catch let stop as GiveUp {
            throw stop
        } catch {}
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
