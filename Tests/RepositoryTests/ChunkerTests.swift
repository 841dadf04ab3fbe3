import Foundation
import Repository
import StorageTesting
import Testing

@Suite("Content-defined chunker")
struct ChunkerTests {
    static let parameters = ChunkerParameters(seed: Data(repeating: 7, count: 32))

    func chunks(_ data: Data, _ chunker: Chunker) -> [Int] {
        var sizes: [Int] = []
        data.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                let window = UnsafeRawBufferPointer(rebasing: raw[start...])
                let cut = chunker.nextBoundary(in: window, final: true)!
                sizes.append(cut)
                start += cut
            }
        }
        return sizes
    }

    @Test("sizes stay within min and max and average near the target")
    func sizes() {
        let chunker = Chunker(parameters: Self.parameters)
        var rng = SeededRandom(seed: 42)
        let data = rng.bytes(64 << 20)
        let sizes = chunks(data, chunker)
        #expect(sizes.reduce(0, +) == data.count)
        for size in sizes.dropLast() {
            #expect(size >= Self.parameters.minSize && size <= Self.parameters.maxSize)
        }
        let mean = Double(data.count) / Double(sizes.count)
        #expect(mean > 0.7 * 1048576 && mean < 1.6 * 1048576, "mean chunk \(mean)")
    }

    @Test("an insertion changes only the chunks around it")
    func insertionLocality() {
        let chunker = Chunker(parameters: Self.parameters)
        var rng = SeededRandom(seed: 9)
        let data = rng.bytes(24 << 20)
        var edited = data
        edited.insert(contentsOf: Data("inserted bytes".utf8), at: 10 << 20)
        func boundaries(_ d: Data) -> Set<Int> {
            var offsets: Set<Int> = []
            var end = 0
            for size in chunks(d, chunker) { end += size; offsets.insert(end) }
            return offsets
        }
        let before = boundaries(data)
        let after = Set(boundaries(edited).map { $0 > 10 << 20 ? $0 - 14 : $0 })
        let shared = before.intersection(after).count
        #expect(Double(shared) / Double(before.count) > 0.8, "\(shared) of \(before.count) boundaries survive")
    }

    @Test("the gear table depends on the repository secret")
    func keyedTable() {
        let a = ChunkerParameters(seed: Data(repeating: 1, count: 32)).gearTable()
        let b = ChunkerParameters(seed: Data(repeating: 2, count: 32)).gearTable()
        #expect(a != b)
        #expect(a == ChunkerParameters(seed: Data(repeating: 1, count: 32)).gearTable())
    }

    @Test("streaming from a file gives the same chunks as the whole buffer")
    func streamingMatches() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 3)
        let data = rng.bytes(20 << 20)
        try TestFiles.write(dir.sub("f"), data)
        let fd = open(dir.sub("f"), O_RDONLY)
        defer { close(fd) }
        let streamed = try Self.stream(fd)
        #expect(streamed.joined == data)
        #expect(streamed.sizes == chunks(data, Chunker(parameters: Self.parameters)))
    }

    /// A file's chunks as `FileChunker` cuts them: their sizes, their bytes joined, and the chunker's counters.
    static func stream(_ fd: Int32) throws -> (sizes: [Int], joined: Data, bytesRead: Int, holeBytes: Int) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: parameters.maxSize + (1 << 20), alignment: 64)
        defer { buffer.deallocate() }
        var stream = FileChunker(chunker: Chunker(parameters: parameters), fd: fd, buffer: buffer)
        var sizes: [Int] = []
        var joined = Data()
        while let chunk = try stream.next() {
            sizes.append(chunk.count)
            joined.append(chunk)
        }
        return (sizes, joined, stream.bytesRead, stream.holeBytes)
    }

    @Test("holes of a sparse file are not read, and its chunks are those of the same bytes written out")
    func sparseFileHoles() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var rng = SeededRandom(seed: 5)
        let head = rng.bytes(3 << 20), tail = rng.bytes(2 << 20)
        let hole = 24 << 20
        let fd = open(dir.sub("sparse"), O_RDWR | O_CREAT, 0o600)
        defer { close(fd) }
        head.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress!, $0.count, 0) }
        tail.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress!, $0.count, off_t(head.count + hole)) }
        var whole = head
        whole.append(Data(count: hole))
        whole.append(tail)
        let streamed = try Self.stream(fd)
        #expect(streamed.joined == whole)
        #expect(streamed.sizes == chunks(whole, Chunker(parameters: Self.parameters)))
        #expect(streamed.bytesRead == whole.count)
        // The file system may round a hole to its blocks; most of the 24 MiB must not have been read.
        #expect(streamed.holeBytes >= hole - (1 << 20), "\(streamed.holeBytes) bytes of holes filled in memory")
    }
}
