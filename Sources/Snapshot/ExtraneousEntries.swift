import Foundation

/// Makes a restored directory hold exactly what the snapshot holds: entries that are not in the
/// snapshot's listing of that directory (files created after the backup) are removed. Used by both
/// writers of volume data — `Restorer` on the host and `DirectoryReceiver` in mover pods — when a volume is
/// restored to a restore point's state.
public enum ExtraneousEntries {
    /// Removes the entries of `directory` whose names are not in `keeping` (a file system's `lost+found`
    /// stays); returns what could not be removed.
    static func remove(in directory: String, keeping: Set<String>) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var errors: [String] = []
        for name in names where !keeping.contains(name) && name != "lost+found" {
            let path = directory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                do {
                    try FileManager.default.removeItem(atPath: path)
                } catch {
                    errors.append("\(path): not removed: \(error.localizedDescription)")
                }
            } else if unlink(path) != 0 {
                errors.append("\(path): not removed: \(String(cString: strerror(errno)))")
            }
        }
        return errors
    }
}
