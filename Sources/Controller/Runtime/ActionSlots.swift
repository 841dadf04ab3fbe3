/// How many actions run at once: at most `total` in the cluster and `perNamespace` in one namespace. The
/// others wait in line, first come first served (by creation time), and each knows its place. Pure state:
/// `ActionRuns` holds it, the reconcilers ask it before they claim an action.
struct ActionSlots: Sendable {
    struct Limits: Sendable, Equatable {
        var total: Int
        var perNamespace: Int
    }

    struct Waiter: Sendable, Equatable {
        var uid: String
        var namespace: String
        /// Creation time (RFC 3339 sorts as text) and UID: the order of the line.
        var created: String
        var key: ObjectKey
        /// When it last asked (a waiter that stops asking — deleted meanwhile — leaves the line).
        var seen: ContinuousClock.Instant = .now

        var order: (String, String) { (created, uid) }
    }

    enum Decision: Sendable, Equatable {
        /// A slot is reserved for it until `release`.
        case start
        /// Its place in line (1: next) and why it waits.
        case wait(position: Int, reason: String)
    }

    let limits: Limits
    /// UID → namespace of the actions holding a slot.
    private(set) var running: [String: String] = [:]
    private(set) var line: [Waiter] = []
    /// How long a waiter stays in line without asking again.
    var patience: Duration = .seconds(90)

    init(limits: Limits) {
        self.limits = limits
    }

    func count(in namespace: String) -> Int { running.values.filter { $0 == namespace }.count }

    mutating func request(_ waiter: Waiter, now: ContinuousClock.Instant = .now) -> Decision {
        if running[waiter.uid] != nil { return .start }
        line.removeAll { $0.uid == waiter.uid || now - $0.seen > patience }
        var me = waiter
        me.seen = now
        let index = line.firstIndex { $0.order > me.order } ?? line.count
        line.insert(me, at: index)
        // Earlier waiters that could start now go first; they are woken to do so.
        let ahead = line[..<index].filter { count(in: $0.namespace) < limits.perNamespace }.count
        if running.count >= limits.total {
            return .wait(position: index + 1, reason: "all \(limits.total) action slots of the cluster are taken")
        }
        if count(in: waiter.namespace) >= limits.perNamespace {
            return .wait(position: index + 1,
                         reason: "\(limits.perNamespace) action(s) already run in namespace \(waiter.namespace)")
        }
        if ahead > 0 && running.count + ahead >= limits.total {
            return .wait(position: index + 1, reason: "earlier actions take the free slots first")
        }
        line.remove(at: index)
        running[waiter.uid] = waiter.namespace
        return .start
    }

    /// Frees the action's slot (or its place in line); returns the waiters to wake.
    mutating func release(_ uid: String) -> [ObjectKey] {
        let held = running.removeValue(forKey: uid) != nil
        line.removeAll { $0.uid == uid }
        return held ? line.map(\.key) : []
    }
}
