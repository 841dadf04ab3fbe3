import Foundation
import Kube
import Logging

/// The state of a `coordination.k8s.io/v1` Lease as leader election reads it.
public struct LeaseRecord: Sendable, Equatable {
    public var holder: String?
    public var durationSeconds: Int
    public var acquireTime: Date?
    public var renewTime: Date?
    public var transitions: Int

    public init(holder: String?, durationSeconds: Int, acquireTime: Date?, renewTime: Date?, transitions: Int) {
        self.holder = holder
        self.durationSeconds = durationSeconds
        self.acquireTime = acquireTime
        self.renewTime = renewTime
        self.transitions = transitions
    }

    /// What the candidate `me` should do about this lease at `now` — pure, so it is tested without a
    /// cluster. A lease nobody renewed for its duration is free; a released one (no holder) at once.
    public enum Decision: Sendable, Equatable {
        /// Write ourselves as holder (a takeover counts one more transition).
        case acquire(transition: Bool)
        /// We hold it: write a fresh renew time.
        case renew
        /// Someone else holds it until then: try again no earlier.
        case wait(until: Date)
    }

    public func decide(for me: String, now: Date) -> Decision {
        guard let holder, !holder.isEmpty else { return .acquire(transition: true) }
        if holder == me { return .renew }
        let expiry = (renewTime ?? acquireTime ?? .distantPast).addingTimeInterval(TimeInterval(durationSeconds))
        if expiry <= now { return .acquire(transition: true) }
        return .wait(until: expiry)
    }

    static var formatter: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }

    /// Lease times are MicroTime: RFC 3339 with microseconds.
    static func microTime(_ date: Date) -> String {
        let text = formatter.string(from: date)   // …SS.mmmZ
        return text.replacingOccurrences(of: "Z", with: "000Z")
    }

    static func parse(_ text: String?) -> Date? {
        guard let text else { return nil }
        if let d = formatter.date(from: text) { return d }
        // Microseconds: keep milliseconds for the parser.
        if let dot = text.firstIndex(of: "."), text.hasSuffix("Z") {
            let fraction = text[text.index(after: dot)..<text.index(before: text.endIndex)]
            return formatter.date(from: String(text[..<dot]) + "." + fraction.prefix(3) + "Z")
        }
        return ISO8601DateFormatter().date(from: text)
    }

    init(_ lease: KubeObject) {
        holder = lease["spec", "holderIdentity"]?.string
        durationSeconds = Int(lease["spec", "leaseDurationSeconds"]?.int ?? 15)
        acquireTime = Self.parse(lease["spec", "acquireTime"]?.string)
        renewTime = Self.parse(lease["spec", "renewTime"]?.string)
        transitions = Int(lease["spec", "leaseTransitions"]?.int ?? 0)
    }
}

/// Leader election on a Lease, as client-go does it: only the holder acts; it renews every
/// `renewInterval`; if it cannot renew within `renewDeadline` it stops acting (before anyone else may
/// take over, after `duration`); on a graceful stop it releases the lease so a successor starts at once.
public struct LeaderElection: Sendable {
    public static let resource = APIResource(group: "coordination.k8s.io", version: "v1", name: "leases",
                                             kind: "Lease", namespaced: true)
    public let client: KubeClient
    public let namespace: String
    public let name: String
    public let identity: String
    public var duration: Duration = .seconds(15)
    public var renewDeadline: Duration = .seconds(10)
    public var retryInterval: Duration = .seconds(2)
    let logger: Logger

    public init(client: KubeClient, namespace: String, name: String, identity: String, logger: Logger) {
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.logger = logger
    }

    var durationSeconds: Int { Int(duration.components.seconds) }

    /// Tries once to take or renew the lease; true when we hold it afterwards.
    func tryAcquireOrRenew(now: Date = Date()) async throws -> Bool {
        let existing: KubeObject
        do {
            existing = try await client.get(Self.resource, name, namespace: namespace)
        } catch let error as KubeError where error.code == .notFound {
            var lease = KubeObject(apiVersion: "coordination.k8s.io/v1", kind: "Lease", name: name, namespace: namespace)
            lease["spec"] = ["holderIdentity": .string(identity), "leaseDurationSeconds": .int(Int64(durationSeconds)),
                             "acquireTime": .string(LeaseRecord.microTime(now)), "renewTime": .string(LeaseRecord.microTime(now)),
                             "leaseTransitions": 0]
            do {
                _ = try await client.create(lease, as: Self.resource, namespace: namespace)
                return true
            } catch let error as KubeError where error.code == .alreadyExists {
                return false
            }
        }
        let record = LeaseRecord(existing)
        var lease = existing
        switch record.decide(for: identity, now: now) {
        case .wait:
            return false
        case .renew:
            lease["spec", "renewTime"] = .string(LeaseRecord.microTime(now))
        case .acquire:
            lease["spec", "holderIdentity"] = .string(identity)
            lease["spec", "leaseDurationSeconds"] = .int(Int64(durationSeconds))
            lease["spec", "acquireTime"] = .string(LeaseRecord.microTime(now))
            lease["spec", "renewTime"] = .string(LeaseRecord.microTime(now))
            lease["spec", "leaseTransitions"] = .int(Int64(record.transitions + 1))
        }
        do {
            _ = try await client.update(lease)
            return true
        } catch let error as KubeError where error.code == .conflict {
            return false   // someone else wrote it first: read again next round
        }
    }

    /// Waits until this candidate holds the lease. Throws only when cancelled.
    public func acquire() async throws {
        var logged = false
        while true {
            try Task.checkCancellation()
            do {
                if try await tryAcquireOrRenew() {
                    logger.info("leader.acquired", metadata: ["cairn.lease": "\(namespace)/\(name)", "cairn.identity": "\(identity)"])
                    return
                }
                if !logged {
                    logger.info("leader.waiting", metadata: ["cairn.lease": "\(namespace)/\(name)"])
                    logged = true
                }
            } catch let error as KubeError {
                logger.warning("leader.error", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: retryInterval)
        }
    }

    /// Renews the lease until renewing fails for longer than `renewDeadline` (returns: leadership lost)
    /// or the task is cancelled (throws CancellationError).
    public func holdUntilLost() async throws {
        var lastRenew = ContinuousClock.now
        while true {
            try await Task.sleep(for: retryInterval)
            do {
                if try await tryAcquireOrRenew() {
                    lastRenew = .now
                    continue
                }
                logger.error("leader.lost", metadata: ["cairn.lease": "\(namespace)/\(name)"])
                return
            } catch let error as KubeError {
                logger.warning("leader.renew.failed", metadata: ["error": "\(error)"])
            }
            if ContinuousClock.now - lastRenew > renewDeadline {
                logger.error("leader.lost", metadata: ["cairn.lease": "\(namespace)/\(name)", "reason": "renew deadline passed"])
                return
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so a successor need not wait for it to expire.
    public func release() async {
        guard var lease = try? await client.get(Self.resource, name, namespace: namespace),
              lease["spec", "holderIdentity"]?.string == identity else { return }
        lease["spec", "holderIdentity"] = .string("")
        lease["spec", "renewTime"] = .string(LeaseRecord.microTime(Date()))
        lease["spec", "leaseDurationSeconds"] = 1
        _ = try? await client.update(lease)
        logger.info("leader.released", metadata: ["cairn.lease": "\(namespace)/\(name)"])
    }
}
