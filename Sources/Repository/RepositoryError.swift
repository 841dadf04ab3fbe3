import Foundation
import Storage

/// The one error type of the `Repository` module. `code` is stable; `message` says what went wrong and
/// what to do; `location` names the object. Never carries a password or key.
public struct RepositoryError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notARepository = "not-a-repository"
        case newerFormat = "newer-format"
        case wrongPassword = "wrong-password"
        case corrupt = "corrupt"
        case missing = "missing"
        case locked = "locked"
        case invalidArgument = "invalid-argument"
        case storage = "storage"
        case keyInUse = "key-in-use"
    }

    public var code: Code
    public var message: String
    public var location: String?
    public var underlying: String?

    public init(_ code: Code, _ message: String, location: String? = nil, underlying: String? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.underlying = underlying
    }

    public var description: String {
        var text = message
        if let location { text += " (\(location))" }
        if let underlying { text += ": \(underlying)" }
        return text
    }

    public static func corrupt(_ what: String, _ location: String, _ detail: String? = nil) -> RepositoryError {
        RepositoryError(.corrupt,
                        "\(what) is damaged; run `cairn repo check --read-data` to see what it affects",
                        location: location, underlying: detail)
    }
}
