import CZstd
import Foundation
import Synchronization

/// zstd through libzstd, with pooled contexts (a context costs hundreds of KiB to set up).
public enum Zstd {
    /// A libzstd context; used by one thread at a time (taken from and returned to the pool).
    private struct Context: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private final class ContextPool: Sendable {
        let compress = Mutex<[Context]>([])
        let decompress = Mutex<[Context]>([])
    }

    private static let pool = ContextPool()

    /// Compresses `input` at `level`; returns nil when the output would not be smaller than `limit`.
    /// With `prefix`, the result starts with that byte, followed by the frame (no extra copy).
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32, limit: Int, prefix: UInt8?) -> Data? {
        let context = pool.compress.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createCCtx()!)
        let ctx = context.pointer
        defer { pool.compress.withLock { if $0.count < 16 { $0.append(context) } else { ZSTD_freeCCtx(ctx) } } }
        let bound = min(ZSTD_compressBound(input.count), limit)
        guard bound > 0 else { return nil }
        let skip = prefix == nil ? 0 : 1
        var out = Data(count: bound + skip)
        let written = out.withUnsafeMutableBytes { dst in
            if let prefix { dst[0] = prefix }
            return ZSTD_compressCCtx(ctx, dst.baseAddress! + skip, bound, input.baseAddress, input.count, level)
        }
        if ZSTD_isError(written) != 0 { return nil }   // dstSize_tooSmall: did not fit under the limit
        out.count = written + skip
        return out
    }

    /// Decompresses a frame whose content is exactly `expectedSize` bytes.
    public static func decompress(_ input: Data, expectedSize: Int) throws -> Data {
        let context = pool.decompress.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createDCtx()!)
        let ctx = context.pointer
        defer { pool.decompress.withLock { if $0.count < 16 { $0.append(context) } else { ZSTD_freeDCtx(ctx) } } }
        var out = Data(count: expectedSize)
        let written = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_decompressDCtx(ctx, dst.baseAddress, expectedSize, src.baseAddress, src.count)
            }
        }
        guard ZSTD_isError(written) == 0, written == expectedSize else {
            throw RepositoryError(.corrupt, "compressed data does not decompress to its recorded size")
        }
        return out
    }

    /// The decompressed size recorded in a frame header, if any.
    public static func frameContentSize(_ input: Data) -> Int? {
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        guard size < UInt64.max - 1, size <= UInt64(Int32.max) else { return nil }
        return Int(size)
    }

    /// Decompresses a stream of zstd frames as it arrives, piece by piece, in bounded memory (a command's
    /// compressed stdout). Used by one task at a time.
    public final class StreamDecoder: @unchecked Sendable {
        private let stream: OpaquePointer
        private var output: [UInt8]
        /// Whether the input so far ends at the end of a frame (false: a frame was cut).
        public private(set) var atFrameEnd = true

        public init() {
            stream = ZSTD_createDStream()!
            ZSTD_initDStream(stream)
            output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        }

        deinit { ZSTD_freeDStream(stream) }

        /// The bytes `input` decompresses to (possibly none yet).
        public func decode(_ input: [UInt8]) throws -> [UInt8] {
            var result: [UInt8] = []
            var failure: Int?
            input.withUnsafeBytes { src in
                var inBuffer = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
                var full = false
                repeat {
                    let outputSize = output.count
                    let (code, produced) = output.withUnsafeMutableBytes { dst -> (Int, Int) in
                        var outBuffer = ZSTD_outBuffer(dst: dst.baseAddress, size: outputSize, pos: 0)
                        let code = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                        return (code, outBuffer.pos)
                    }
                    if ZSTD_isError(code) != 0 {
                        failure = code
                        return
                    }
                    result += output[0..<produced]
                    full = produced == outputSize
                    if src.count > 0 { atFrameEnd = code == 0 }
                } while inBuffer.pos < inBuffer.size || full
            }
            if let failure {
                throw DecodeError(description: "it is not a zstd stream, or a damaged one (\(String(cString: ZSTD_getErrorName(failure))))")
            }
            return result
        }
    }

    /// Input a `StreamDecoder` cannot decompress.
    public struct DecodeError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }
}
