import ArgumentParser
import Foundation
import Snapshot

/// What runs inside a mover pod (Cairn's own image): Cairn execs `send`/`receive` there through the
/// API server and exchanges a volume stream with them. The pod needs no repository, password or
/// credentials: it only sees its own volume. Hidden from help: people do not run these.
struct MoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mover",
        abstract: "Inside a mover pod: stream a mounted volume out, or write one in.",
        shouldDisplay: false,
        subcommands: [Idle.self, Send.self, Receive.self])

    struct Idle: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Wait until terminated (the pod's main process).")

        func run() throws {
            signal(SIGTERM) { _ in _exit(0) }
            signal(SIGINT) { _ in _exit(0) }
            while true { pause() }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a parent listing on stdin, then write DIRECTORY as a volume stream on stdout.")

        @Argument var directory: String

        @Option(name: .long, help: "A path pattern under DIRECTORY not to send (repeatable; see PathExclusion).")
        var exclude: [String] = []

        func run() async throws {
            let input = VolumeStreamReader(source: { try readChunk(STDIN_FILENO) })
            var unchanged = ParentListing()
            try await input.listing { unchanged.add($0) }
            let writer = VolumeStreamWriter(sink: { try writeAll(STDOUT_FILENO, $0) })
            let totals = try await DirectorySender(root: directory, unchanged: unchanged, exclude: PathExclusion(exclude)).send(to: writer)
            FileHandle.standardError.write(Data("sent \(totals.files) files, \(totals.bytes) bytes, \(totals.warnings) warnings\n".utf8))
        }
    }

    struct Receive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the volume stream read on stdin into DIRECTORY; print a JSON summary.")

        @Argument var directory: String

        @Flag(name: .long, help: "Remove what DIRECTORY holds beyond the stream.")
        var exact = false

        func run() async throws {
            let reader = VolumeStreamReader(source: { try readChunk(STDIN_FILENO) })
            let totals = try await DirectoryReceiver(root: directory, removeExtraneous: exact).receive(from: reader)
            sync()
            try printJSON(totals)
        }
    }
}

func readChunk(_ fd: Int32) throws -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw CLIError("read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { return nil }
        buffer.removeLast(buffer.count - n)
        return buffer
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("write: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}
