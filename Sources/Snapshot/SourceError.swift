import Foundation

/// A problem with one source file during backup (unreadable, vanished). The backup goes on without it;
/// the run ends as partial.
struct SourceError: Error, CustomStringConvertible {
    var path: String
    var reason: String

    init(path: String, errno code: Int32, operation: String) {
        self.path = path
        self.reason = "\(operation): \(String(cString: strerror(code)))"
    }

    var description: String { "\(path): \(reason)" }
}
