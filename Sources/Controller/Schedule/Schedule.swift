import Foundation

/// When a Policy runs: a cron expression in a time zone.
///
/// Accepted forms:
/// - the macros `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`);
/// - five fields `minute hour day-of-month month day-of-week`, as cron(8);
/// - six fields with a leading `second` field, for schedules finer than a minute.
///
/// Each field takes `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, and comma lists; months and
/// weekdays also by their English three-letter names; day-of-week 0 and 7 are Sunday. As in cron, when
/// both day fields are restricted a day matches if either does. Times that do not exist in the zone
/// (the hour skipped when clocks go forward) are skipped; an hour that happens twice runs once.
public struct Schedule: Sendable, Equatable {
    public let expression: String
    public let timeZone: TimeZone
    let seconds: Set<Int>
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>   // 0 = Sunday
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses `expression` for the zone named `timeZone` (an IANA name such as `Europe/Berlin`; UTC when nil).
    public init(_ expression: String, timeZone: String? = nil) throws(ControllerError) {
        let trimmed = expression.trimmingCharacters(in: .whitespaces)
        guard let zone = TimeZone(identifier: timeZone ?? "UTC") else {
            throw ControllerError("InvalidTimeZone", "unknown time zone '\(timeZone ?? "")' (use an IANA name such as Europe/Berlin)")
        }
        self.expression = trimmed
        self.timeZone = zone
        let text = Self.macros[trimmed.lowercased()] ?? trimmed
        if text.hasPrefix("@") {
            throw ControllerError("InvalidSchedule", "unknown schedule '\(trimmed)' (use @hourly, @daily, @weekly, @monthly, @yearly or a cron expression)")
        }
        var fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).lowercased() }
        guard fields.count == 5 || fields.count == 6 else {
            throw ControllerError("InvalidSchedule", "schedule '\(trimmed)' has \(fields.count) fields; a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 (with seconds first)")
        }
        if fields.count == 5 { fields.insert("0", at: 0) }
        seconds = try Self.field(fields[0], "second", 0...59)
        minutes = try Self.field(fields[1], "minute", 0...59)
        hours = try Self.field(fields[2], "hour", 0...23)
        days = try Self.field(fields[3], "day-of-month", 1...31)
        months = try Self.field(fields[4], "month", 1...12, names: Self.monthNames, nameBase: 1)
        var weekdays = try Self.field(fields[5], "day-of-week", 0...7, names: Self.dayNames, nameBase: 0)
        if weekdays.remove(7) != nil { weekdays.insert(0) }
        self.weekdays = weekdays
        daysRestricted = !fields[3].hasPrefix("*")
        weekdaysRestricted = !fields[5].hasPrefix("*")
    }

    static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String] = [],
                      nameBase: Int = 0) throws(ControllerError) -> Set<Int> {
        func number(_ s: Substring) throws(ControllerError) -> Int {
            if let n = Int(s), range.contains(n) { return n }
            if let i = names.firstIndex(of: String(s)) { return i + nameBase }
            throw ControllerError("InvalidSchedule", "\(name) '\(s)' is not in \(range.lowerBound)–\(range.upperBound)\(names.isEmpty ? "" : " or a name such as \(names[0])")")
        }
        var values: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2, !pieces[0].isEmpty else {
                throw ControllerError("InvalidSchedule", "\(name) field '\(text)' is malformed")
            }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s > 0 else {
                    throw ControllerError("InvalidSchedule", "\(name) step '\(pieces[1])' must be a positive number")
                }
                step = s
            }
            let bounds: ClosedRange<Int>
            if pieces[0] == "*" {
                bounds = range.lowerBound == 0 && range.upperBound == 7 ? 0...6 : range
            } else if pieces[0].contains("-") {
                let ends = pieces[0].split(separator: "-", omittingEmptySubsequences: false)
                guard ends.count == 2 else { throw ControllerError("InvalidSchedule", "\(name) range '\(pieces[0])' is malformed") }
                let low = try number(ends[0]), high = try number(ends[1])
                guard low <= high else { throw ControllerError("InvalidSchedule", "\(name) range '\(pieces[0])' runs backwards") }
                bounds = low...high
            } else {
                let n = try number(pieces[0])
                bounds = n...(pieces.count == 2 ? range.upperBound : n)
            }
            values.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return values
    }

    var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c
    }

    func dayMatches(day: Int, weekday: Int) -> Bool {
        if daysRestricted && weekdaysRestricted { return days.contains(day) || weekdays.contains(weekday) }
        return days.contains(day) && weekdays.contains(weekday)
    }

    /// The first time strictly after `date` the schedule fires; nil if it never does (e.g. 30 February)
    /// within the next eight years.
    public func next(after date: Date) -> Date? {
        let cal = calendar
        let start = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard let startYear = start.year else { return nil }
        let sortedHours = hours.sorted(), sortedMinutes = minutes.sorted(), sortedSeconds = seconds.sorted()
        for year in startYear...(startYear + 8) {
            for month in months.sorted() {
                if year == startYear && month < start.month! { continue }
                guard let monthStart = cal.date(from: DateComponents(year: year, month: month, day: 1)),
                      let dayCount = cal.range(of: .day, in: .month, for: monthStart)?.count else { continue }
                for day in 1...dayCount {
                    if year == startYear && month == start.month! && day < start.day! { continue }
                    guard let dayDate = cal.date(from: DateComponents(year: year, month: month, day: day, hour: 12)) else { continue }
                    let weekday = cal.component(.weekday, from: dayDate) - 1
                    guard dayMatches(day: day, weekday: weekday) else { continue }
                    let sameDay = year == startYear && month == start.month! && day == start.day!
                    for hour in sortedHours {
                        if sameDay && hour < start.hour! { continue }
                        for minute in sortedMinutes {
                            if sameDay && hour == start.hour! && minute < start.minute! { continue }
                            for second in sortedSeconds {
                                let wanted = DateComponents(year: year, month: month, day: day, hour: hour,
                                                            minute: minute, second: second)
                                guard let candidate = cal.date(from: wanted), candidate > date else { continue }
                                // A wall time that does not exist in the zone comes back shifted: skip it.
                                let got = cal.dateComponents([.year, .month, .day, .hour, .minute], from: candidate)
                                guard got.hour == hour, got.minute == minute, got.day == day else { continue }
                                return candidate
                            }
                        }
                    }
                }
            }
        }
        return nil
    }
}

/// What a Policy's schedule asks for now: a run (once, however many times were missed) and when to look
/// again. Pure; the Policy reconciler acts on it.
public struct SchedulePlan: Sendable, Equatable {
    /// The scheduled time to run for now, if one has come since the last run.
    public var due: Date?
    /// Scheduled times that passed without a run and are folded into `due` (0 when on time).
    public var missed: Int
    /// The next scheduled time after now.
    public var next: Date?

    /// Plans from the last scheduled time that ran (or the Policy's creation) to `now`.
    public static func plan(_ schedule: Schedule, lastRun: Date, now: Date) -> SchedulePlan {
        guard var slot = schedule.next(after: lastRun) else { return SchedulePlan(due: nil, missed: 0, next: nil) }
        guard slot <= now else { return SchedulePlan(due: nil, missed: 0, next: slot) }
        var passed = 0
        // Walk to the latest slot not after now; after many slots, jump close to now and walk from there.
        while let following = schedule.next(after: slot), following <= now {
            passed += 1
            slot = following
            if passed == 10_000, let near = schedule.next(after: now.addingTimeInterval(-3600)), near <= now {
                slot = near
            }
        }
        return SchedulePlan(due: slot, missed: passed, next: schedule.next(after: now))
    }
}
