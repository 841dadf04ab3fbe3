import Foundation

/// A period as Cairn's resources spell it: `90s`, `30m`, `12h`, `7d` (a whole number and one unit).
public enum Period {
    /// The period in seconds, or nil when `text` is not one.
    public static func seconds(_ text: String) -> TimeInterval? {
        guard let unit = text.last, let n = Int(text.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "s": return TimeInterval(n)
        case "m": return TimeInterval(n) * 60
        case "h": return TimeInterval(n) * 3600
        case "d": return TimeInterval(n) * 86_400
        default: return nil
        }
    }
}
