import Foundation

/// Paths a volume capture leaves out (a blueprint's `exclude`: PostgreSQL's `pg_wal/*`, whose needed part
/// the blueprint keeps as an artifact). One rule for the host walk (`Archiver`) and the mover's
/// (`DirectorySender`).
///
/// A pattern is a glob (`*`, `?`, `[…]`; `*` does not cross `/`) matched against an entry's path relative
/// to the volume's root: one that starts with `/` is anchored there, any other matches at any depth — its
/// components against the same number of trailing components of the path (`pg_wal/*` leaves out
/// `pgdata/pg_wal/000000010000000000000003` but keeps the directory `pgdata/pg_wal` itself). An excluded
/// directory is left out with everything under it. Patterns are checked where they are written
/// (`Blueprint`: no empty, `.` or `..` component).
public struct PathExclusion: Sendable, Equatable {
    public let patterns: [String]

    public init(_ patterns: [String]) {
        self.patterns = patterns
    }

    public var isEmpty: Bool { patterns.isEmpty }

    /// Whether the entry at `relative` (components joined by `/`, no leading `/`) is left out.
    public func excludes(_ relative: String) -> Bool {
        guard !patterns.isEmpty else { return false }
        for pattern in patterns {
            if pattern.hasPrefix("/") {
                if fnmatch(String(pattern.dropFirst()), relative, FNM_PATHNAME) == 0 { return true }
                continue
            }
            // Unanchored: the pattern's components against the path's last as many components.
            let depth = pattern.split(separator: "/").count
            let components = relative.split(separator: "/")
            guard components.count >= depth else { continue }
            if fnmatch(pattern, components.suffix(depth).joined(separator: "/"), FNM_PATHNAME) == 0 { return true }
        }
        return false
    }
}
