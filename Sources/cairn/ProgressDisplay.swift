import Foundation

/// A one-line progress display on stderr, redrawn a few times a second; only on a terminal.
final class ProgressDisplay: Sendable {
    let task: Task<Void, Never>
    let enabled: Bool

    /// `sample` returns (done bytes, total bytes or nil, files done, label).
    init(enabled: Bool, sample: @escaping @Sendable () -> (bytes: Int, total: Int?, files: Int)) {
        let start = Date()
        self.enabled = enabled
        task = Task {
            guard enabled else { return }
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 250_000_000)
                if Task.isCancelled { break }
                let (bytes, total, files) = sample()
                let elapsed = Date().timeIntervalSince(start)
                let rate = elapsed > 0 ? Double(bytes) / elapsed : 0
                var line = "[\(formatDuration(elapsed))] \(files) files, \(formatBytes(bytes))"
                if let total, total > 0 {
                    line += " of \(formatBytes(total)) (\(min(100, bytes * 100 / total))%)"
                }
                line += ", \(formatBytes(Int(rate)))/s"
                if let total, rate > 0, total > bytes {
                    line += ", ETA \(formatDuration(Double(total - bytes) / rate))"
                }
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            }
        }
    }

    func stop() {
        task.cancel()
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
