import Foundation
import Storage

/// A content-defined chunker: FastCDC-style gear hashing with normalised chunking (level 2).
///
/// The fingerprint is `fp = (fp << 1) &+ gear[byte]`, so its top bits depend on the last 64 bytes. A
/// boundary is declared where the top bits selected by a mask are all zero: a *harder* mask (average bits
/// + 2) between the minimum and the average size, an *easier* one (average bits − 2) beyond it. This
/// pulls chunk sizes towards the average. The first `minSize` bytes of a chunk are skipped unhashed, and a
/// chunk is cut at `maxSize` regardless. Boundaries depend only on content, so an insertion shifts only
/// the chunks around it.
public struct Chunker: Sendable {
    public let parameters: ChunkerParameters
    let gear: [UInt64]
    let maskSmall: UInt64
    let maskLarge: UInt64

    public init(parameters: ChunkerParameters) {
        self.parameters = parameters
        self.gear = parameters.gearTable()
        // Top-bit masks: the top bits of the fingerprint carry the widest window of input.
        let hard = parameters.averageBits + 2
        let easy = parameters.averageBits - 2
        self.maskSmall = ~UInt64(0) << UInt64(64 - hard)
        self.maskLarge = ~UInt64(0) << UInt64(64 - easy)
    }

    /// Where a scan that needed more input stopped, so it resumes instead of starting over.
    public struct ScanState: Sendable {
        var position = 0
        var fingerprint: UInt64 = 0

        public init() {}
    }

    /// The length of the next chunk at the start of `buffer`. When `final` is false and no boundary is
    /// found within `buffer`, returns nil (more input is needed); `buffer` must then hold fewer than
    /// `maxSize` bytes, otherwise a cut at `maxSize` is returned.
    public func nextBoundary(in buffer: UnsafeRawBufferPointer, final: Bool) -> Int? {
        var state = ScanState()
        return nextBoundary(in: buffer, final: final, state: &state)
    }

    /// As `nextBoundary(in:final:)`, resuming from `state` when earlier calls for the same chunk returned
    /// nil; `buffer` must start at the same chunk start and only have grown.
    public func nextBoundary(in buffer: UnsafeRawBufferPointer, final: Bool, state: inout ScanState) -> Int? {
        let n = buffer.count
        let minSize = parameters.minSize
        let maxSize = parameters.maxSize
        let average = parameters.averageSize
        if n <= minSize {
            return final ? (n > 0 ? n : nil) : nil
        }
        let limit = min(n, maxSize)
        let normal = min(average, limit)
        let resume = state
        let result = gear.withUnsafeBufferPointer { table -> (Int?, Int, UInt64) in
            let bytes = buffer.bindMemory(to: UInt8.self)
            var fp: UInt64 = resume.position > minSize ? resume.fingerprint : 0
            var i = max(minSize, resume.position)
            let small = maskSmall
            let large = maskLarge
            while i < normal {
                fp = (fp << 1) &+ table[Int(bytes[i])]
                if fp & small == 0 { return (i + 1, 0, 0) }
                i += 1
            }
            while i < limit {
                fp = (fp << 1) &+ table[Int(bytes[i])]
                if fp & large == 0 { return (i + 1, 0, 0) }
                i += 1
            }
            if limit == maxSize || final { return (limit, 0, 0) }
            return (nil, i, fp)
        }
        if let cut = result.0 {
            state = ScanState()
            return cut
        }
        state.position = result.1
        state.fingerprint = result.2
        return nil
    }
}

/// Splits a file into chunks, with one reusable buffer.
///
/// Reads 1 MiB at a time and only as far as the next boundary needs, resuming the scan where it stopped,
/// so the memory touched is about the largest chunk plus 1 MiB. Holes of a sparse file are not read: their
/// zeros are filled in memory (`FileIO.nextData`, the rule the mover follows too), so a mostly empty disk
/// image costs chunking, not reading. The caller provides a buffer of at least `maxSize + readSize`; each
/// chunk is handed out as its own `Data`.
public struct FileChunker {
    public static let readSize = 1 << 20
    let chunker: Chunker
    let fd: Int32
    public private(set) var buffer: UnsafeMutableRawBufferPointer
    var start = 0
    var end = 0
    var eof = false
    var scan = Chunker.ScanState()
    /// The file's offset of the next byte to read, the size it had when chunking began (holes are looked
    /// up below it; a file that grows meanwhile is read to its end), and the current data extent.
    var position = 0
    let sizeAtStart: Int
    var data: (start: Int, end: Int) = (0, 0)
    /// Bytes of the file chunked so far, and how many of them were zeros of holes, not read.
    public private(set) var bytesRead = 0
    public private(set) var holeBytes = 0

    public init(chunker: Chunker, fd: Int32, buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= chunker.parameters.maxSize + Self.readSize, "chunker buffer too small")
        self.chunker = chunker
        self.fd = fd
        self.buffer = buffer
        sizeAtStart = max(0, Int(lseek(fd, 0, SEEK_END)))
    }

    /// Reads up to `readSize` more bytes, first moving the unconsumed bytes to the front if needed.
    mutating func fill() throws {
        if end + Self.readSize > buffer.count && start > 0 {
            let live = end - start
            if live > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: live)
            }
            start = 0
            end = live
        }
        let target = min(buffer.count, end + Self.readSize)
        while end < target && !eof {
            if position >= data.end && position < sizeAtStart {
                data = FileIO.nextData(fd, from: position, size: sizeAtStart)
            }
            if position < data.start {
                let n = min(target - end, data.start - position)
                (buffer.baseAddress! + end).initializeMemory(as: UInt8.self, repeating: 0, count: n)
                end += n
                position += n
                bytesRead += n
                holeBytes += n
                continue
            }
            let n = pread(fd, buffer.baseAddress! + end, target - end, off_t(position))
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXErrorCode(rawValue: errno).map { POSIXError($0) } ?? POSIXError(.EIO)
            }
            if n == 0 {
                eof = true
            } else {
                end += n
                position += n
                bytesRead += n
            }
        }
    }

    /// The next chunk, or nil at the end of the file.
    public mutating func next() throws -> Data? {
        while true {
            let window = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
            if let cut = chunker.nextBoundary(in: window, final: eof, state: &scan) {
                let chunk = Data(bytes: buffer.baseAddress! + start, count: cut)
                start += cut
                return chunk
            }
            if eof { return nil }
            try fill()
        }
    }
}

/// Splits a stream that arrives in pieces (a volume streamed by a mover pod) into the same chunks
/// `FileChunker` would cut from the same bytes read from a file: boundaries depend only on content.
public struct StreamChunker {
    let chunker: Chunker
    var buffer: [UInt8] = []
    var start = 0
    var scan = Chunker.ScanState()
    /// Bytes appended so far.
    public private(set) var bytesIn = 0

    public init(chunker: Chunker) {
        self.chunker = chunker
        buffer.reserveCapacity(chunker.parameters.maxSize + FileChunker.readSize)
    }

    /// Appends bytes and returns the chunks they completed.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> [Data] {
        bytesIn += bytes.count
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
        return cut(final: false)
    }

    /// Appends `count` zero bytes (a hole in a sparse file).
    public mutating func appendZeros(_ count: Int) -> [Data] {
        var chunks: [Data] = []
        var left = count
        let zeros = [UInt8](repeating: 0, count: min(count, FileChunker.readSize))
        while left > 0 {
            let n = min(left, zeros.count)
            chunks += zeros.withUnsafeBytes { append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            left -= n
        }
        return chunks
    }

    /// The remaining chunks at the end of the stream; the chunker is then empty again.
    public mutating func finish() -> [Data] {
        let chunks = cut(final: true)
        buffer.removeAll(keepingCapacity: true)
        start = 0
        scan = Chunker.ScanState()
        return chunks
    }

    mutating func cut(final: Bool) -> [Data] {
        var chunks: [Data] = []
        while start < buffer.count {
            let next = buffer.withUnsafeBytes { raw -> Int? in
                chunker.nextBoundary(in: UnsafeRawBufferPointer(rebasing: raw[start...]), final: final, state: &scan)
            }
            guard let length = next else { break }
            chunks.append(buffer.withUnsafeBytes { Data($0[start..<(start + length)]) })
            start += length
        }
        return chunks
    }
}
