import Foundation
@testable import Repository
@testable import Snapshot
import Testing

/// A command's stdout stored as an artifact: plain, or zstd-compressed by the command and stored decompressed.
@Suite("Stream content: artifacts as they arrive")
struct StreamContentTests {
    /// Text like a dump's: lines that repeat with small changes, a few MiB.
    static let plain: [UInt8] = {
        var text = ""
        for i in 0..<60_000 { text += "\(i)\t\(i % 97)\tcustomer-\(i * 7919 % 100_003)\t2026-12-01 10:\(i % 60):00\n" }
        return Array(text.utf8)
    }()

    /// `bytes` in uneven pieces, as an exec stream delivers them.
    static func pieces(_ bytes: [UInt8]) -> () async throws -> [UInt8]? {
        var offset = 0
        var size = 3
        return {
            guard offset < bytes.count else { return nil }
            let n = min(size, bytes.count - offset)
            defer { offset += n; size = size * 7 % 90_001 + 1 }
            return Array(bytes[offset..<(offset + n)])
        }
    }

    static func compressed(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { Array(Zstd.compress($0, level: 1, limit: Int.max, prefix: nil)!) }
    }

    func readBack(_ stored: StreamContent.Stored, _ repository: Repository) async throws -> [UInt8] {
        try await repository.flush()
        var out: [UInt8] = []
        try await StreamContent.read(StreamContent.fileNode(named: "a", stored), from: repository) { out += $0 }
        return out
    }

    @Test("zstd output (two frames, cut anywhere) is stored decompressed — the same chunks as the plain output; auto tells the two apart")
    func decompressed() async throws {
        let repository = try await newRepository()
        try await repository.loadIndex()
        let plain = try await StreamContent.store(in: repository, encoding: .identity, Self.pieces(Self.plain))
        #expect(plain.size == UInt64(Self.plain.count))
        let half = Self.plain.count / 2
        let frames = Self.compressed(Array(Self.plain[..<half])) + Self.compressed(Array(Self.plain[half...]))
        #expect(frames.count < Self.plain.count / 3)
        let zstd = try await StreamContent.store(in: repository, encoding: .zstd, Self.pieces(frames))
        #expect(zstd.content == plain.content && zstd.added == 0, "stored decompressed, so it deduplicates with the plain output")
        #expect(try await readBack(zstd, repository) == Self.plain)
        let auto = try await StreamContent.store(in: repository, encoding: .auto, Self.pieces(frames))
        #expect(auto.content == plain.content)
        let autoPlain = try await StreamContent.store(in: repository, encoding: .auto, Self.pieces(Self.plain))
        #expect(autoPlain.content == plain.content)
        let tiny = try await StreamContent.store(in: repository, encoding: .auto, Self.pieces(Array("ok\n".utf8)))
        #expect(try await readBack(tiny, repository) == Array("ok\n".utf8))
        let empty = try await StreamContent.store(in: repository, encoding: .auto, Self.pieces([]))
        #expect(empty.size == 0)
    }

    @Test("a zstd stream cut inside a frame, or not zstd at all, is an error — never a short artifact")
    func damaged() async throws {
        let repository = try await newRepository()
        try await repository.loadIndex()
        let frame = Self.compressed(Self.plain)
        await #expect(throws: SnapshotError.self) {
            _ = try await StreamContent.store(in: repository, encoding: .zstd, Self.pieces(Array(frame.prefix(frame.count - 100))))
        }
        do {
            _ = try await StreamContent.store(in: repository, encoding: .auto, Self.pieces(Array(frame.prefix(frame.count / 2))))
            Issue.record("a cut stream was stored")
        } catch let error as SnapshotError {
            #expect(error.message.contains("ends inside a frame"), "\(error)")
        }
        do {
            _ = try await StreamContent.store(in: repository, encoding: .zstd, Self.pieces(Self.plain))
            Issue.record("plain text was taken for zstd")
        } catch let error as SnapshotError {
            #expect(error.message.contains("cannot be decompressed"), "\(error)")
        }
    }
}
