import Foundation

/// Which snapshots to keep: the newest `last`, and the newest snapshot in each of the most recent
/// `hourly` hours, `daily` days, `weekly` ISO weeks, `monthly` months and `yearly` years (GFS). A snapshot
/// kept by any rule is kept. Snapshots are grouped by host and paths; each group is judged on its own.
public struct ForgetPolicy: Sendable, Codable, Equatable {
    public var last = 0
    public var hourly = 0
    public var daily = 0
    public var weekly = 0
    public var monthly = 0
    public var yearly = 0

    public init(last: Int = 0, hourly: Int = 0, daily: Int = 0, weekly: Int = 0, monthly: Int = 0, yearly: Int = 0) {
        self.last = last
        self.hourly = hourly
        self.daily = daily
        self.weekly = weekly
        self.monthly = monthly
        self.yearly = yearly
    }

    public var isEmpty: Bool { self == ForgetPolicy() }

    public struct Decision: Sendable {
        public var snapshot: SnapshotManifest
        public var keep: Bool
        /// Which rules keep it ("last", "daily", …).
        public var reasons: [String]
    }

    /// Decides for every snapshot; newest first within each group.
    public func apply(to snapshots: [SnapshotManifest], calendar: Calendar = .utc) -> [Decision] {
        let groups = Dictionary(grouping: snapshots) { "\($0.hostname)\u{0}\($0.paths.joined(separator: "\u{0}"))" }
        var decisions: [Decision] = []
        for key in groups.keys.sorted() {
            for (snapshot, reasons) in keep(groups[key]!, time: \.time, id: \.id, calendar: calendar) {
                decisions.append(Decision(snapshot: snapshot, keep: !reasons.isEmpty, reasons: reasons))
            }
        }
        return decisions
    }

    /// Decides for one group of items (restore points of one application, snapshots of one path…):
    /// each item with the rules that keep it, newest first; an item with no reason goes.
    public func keep<Item>(_ items: [Item], time: (Item) -> Date, id: (Item) -> String,
                           calendar: Calendar = .utc) -> [(Item, [String])] {
        let group = items.sorted { (time($0), id($0)) > (time($1), id($1)) }
        var reasons = [[String]](repeating: [], count: group.count)
        for (i, _) in group.enumerated() where i < last { reasons[i].append("last") }
        let rules: [(String, Int, (Date) -> String)] = [
            ("hourly", hourly, { Self.bucket($0, [.year, .month, .day, .hour], calendar) }),
            ("daily", daily, { Self.bucket($0, [.year, .month, .day], calendar) }),
            ("weekly", weekly, { Self.bucket($0, [.yearForWeekOfYear, .weekOfYear], calendar) }),
            ("monthly", monthly, { Self.bucket($0, [.year, .month], calendar) }),
            ("yearly", yearly, { Self.bucket($0, [.year], calendar) }),
        ]
        for (name, count, bucket) in rules where count > 0 {
            var seen: Set<String> = []
            for (i, item) in group.enumerated() {
                let b = bucket(time(item))
                if seen.contains(b) { continue }
                if seen.count >= count { break }
                seen.insert(b)
                reasons[i].append(name)
            }
        }
        return Array(zip(group, reasons))
    }

    static func bucket(_ date: Date, _ components: Set<Calendar.Component>, _ calendar: Calendar) -> String {
        let c = calendar.dateComponents(components, from: date)
        return [c.year, c.yearForWeekOfYear, c.weekOfYear, c.month, c.day, c.hour].map { "\($0 ?? -1)" }
            .joined(separator: "-")
    }
}

extension Calendar {
    public static var utc: Calendar {
        var c = Calendar(identifier: .iso8601)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }
}
