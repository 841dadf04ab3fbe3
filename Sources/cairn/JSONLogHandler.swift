import Foundation
import Logging

/// One JSON object per line on stderr — the controller's log format, for log collectors:
/// `{"time":…,"level":…,"logger":…,"message":…,<metadata>…}`. Messages are constant strings and
/// metadata never holds secrets (docs/operations.md, "Logs").
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        var fields: [String: String] = [:]
        for (key, value) in self.metadata.merging(extra ?? [:], uniquingKeysWith: { $1 }) { fields[key] = "\(value)" }
        let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        var text = "{\"time\":\(Self.quote(time)),\"level\":\(Self.quote(level.rawValue)),\"logger\":\(Self.quote(label)),\"message\":\(Self.quote(message.description))"
        for key in fields.keys.sorted() {
            text += ",\(Self.quote(key)):\(Self.quote(fields[key]!))"
        }
        text += "}\n"
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
