import Foundation

/// Where the built `cairn` binary is, for tests that run it as a user would: `CAIRN_BIN`, else beside
/// the test bundle, else `.build/debug/cairn` of this checkout.
public enum CairnBinary {
    public static let path: String = {
        if let explicit = ProcessInfo.processInfo.environment["CAIRN_BIN"] { return explicit }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("cairn").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/cairn").path
    }()
}
