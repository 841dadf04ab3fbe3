import Crypto
import Foundation
@testable import Repository
import StorageTesting
import Testing

@Suite("Encryption, compression and binary formats")
struct CodecTests {
    let cipher = BlobCipher(key: SymmetricKey(size: .bits256))

    @Test("sealed messages open only with the same key and associated data")
    func aead() throws {
        let message = Data("the quick brown fox".utf8)
        let sealed = try cipher.seal(message, aad: Data("a".utf8))
        #expect(sealed.count == message.count + BlobCipher.overhead)
        #expect(try cipher.open(sealed, aad: Data("a".utf8)) == message)
        #expect(throws: (any Error).self) { try cipher.open(sealed, aad: Data("b".utf8)) }
        #expect(throws: (any Error).self) {
            try BlobCipher(key: SymmetricKey(size: .bits256)).open(sealed, aad: Data("a".utf8))
        }
        for position in [0, 16, 28, sealed.count - 1] {
            var damaged = sealed
            damaged[position] ^= 0x01
            #expect(throws: (any Error).self) { try cipher.open(damaged, aad: Data("a".utf8)) }
        }
    }

    @Test("a key file's scrypt parameters are bounded before any work: one asking for gigabytes is refused at once")
    func boundedKDF() throws {
        let salt = Data(repeating: 7, count: 32)
        let started = ContinuousClock.now
        for (n, r, p) in [(1 << 22, 8, 1), (1 << 21, 2, 1), (1 << 15, 8, 64), (1 << 20, 64, 1)] {
            #expect(throws: RepositoryError.self) {
                try KeyFile.wrappingKey(password: "pw", kdf: KeyFile.KDF(name: "scrypt", n: n, r: r, p: p, salt: salt))
            }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        _ = try KeyFile.wrappingKey(password: "pw", kdf: KeyFile.KDF(name: "scrypt", n: 1 << 10, r: 8, p: 1, salt: salt))
    }

    @Test("every seal uses a fresh salt and nonce")
    func freshNonces() throws {
        var seen: Set<Data> = []
        for _ in 0..<2000 {
            let sealed = try cipher.seal(Data("same".utf8), aad: Data())
            #expect(seen.insert(sealed.prefix(28)).inserted)
        }
    }

    @Test("AES-256-GCM known answer (McGrew–Viega GCM test case 14)")
    func knownAnswer() throws {
        // McGrew & Viega GCM spec, test case 14: K = 0^256, P = 0^128, IV = 0^96.
        let key = SymmetricKey(data: Data(repeating: 0, count: 32))
        let box = try AES.GCM.seal(Data(repeating: 0, count: 16), using: key,
                                   nonce: AES.GCM.Nonce(data: Data(repeating: 0, count: 12)))
        #expect(box.ciphertext.map { String(format: "%02x", $0) }.joined() == "cea7403d4d606b6e074ec5d3baf39d18")
        #expect(box.tag.map { String(format: "%02x", $0) }.joined() == "d0d1c8a799996bf0265b98b5d48ab919")
    }

    @Test("compressible data is compressed, random data is stored, both round-trip")
    func compression() throws {
        var rng = SeededRandom(seed: 5)
        let text = rng.text(200_000)
        let random = rng.bytes(200_000)
        let t = Repository.encode(text, level: 3)
        let r = Repository.encode(random, level: 3)
        #expect(t.first == 1 && t.count < text.count / 2)
        #expect(r.first == 0 && r.count == random.count + 1)
        #expect(try Repository.decode(t, location: "t", expectedSize: text.count) == text)
        #expect(try Repository.decode(r, location: "r") == random)
        #expect(throws: RepositoryError.self) { try Repository.decode(Data([9, 1, 2]), location: "x") }
    }

    @Test("data that is half random, half structured (database pages) is still compressed")
    func mixedDataCompressed() throws {
        var rng = SeededRandom(seed: 12)
        var pages = Data()
        for i in 0..<128 {
            var structured = Data(String(format: "PAGE%08d|", i).utf8)
            while structured.count < 4096 { structured.append(contentsOf: String(format: "key-%06d|", i % 1000).utf8) }
            pages.append(structured.prefix(4096))
            pages.append(rng.bytes(4096))
        }
        let encoded = Repository.encode(pages, level: 1)
        #expect(encoded.first == 1)
        #expect(encoded.count < pages.count * 6 / 10)
    }

    @Test("index files round-trip and reject damage")
    func indexCodec() throws {
        var rng = SeededRandom(seed: 8)
        var file = IndexFile()
        file.supersedes = [BlobID(bytes: Array(rng.bytes(32)))]
        for _ in 0..<3 {
            var blobs: [PackedBlob] = []
            for i in 0..<50 {
                let type: BlobType = i % 5 == 0 ? .tree : .data
                let id = BlobID(bytes: Array(rng.bytes(32)))
                blobs.append(PackedBlob(type: type, id: id, offset: UInt32(i * 100), length: 100,
                                        rawLength: UInt32(i * 3)))
            }
            file.packs.append(IndexFile.Pack(id: BlobID(bytes: Array(rng.bytes(32))), blobs: blobs))
        }
        let encoded = file.encode()
        let decoded = try IndexFile.decode(encoded, location: "t")
        #expect(decoded.supersedes == file.supersedes)
        #expect(decoded.packs.map(\.id) == file.packs.map(\.id))
        #expect(decoded.packs.map(\.blobs) == file.packs.map(\.blobs))
        #expect(throws: RepositoryError.self) { try IndexFile.decode(encoded.dropLast(3), location: "t") }
        #expect(throws: RepositoryError.self) { try IndexFile.decode(encoded + Data([0]), location: "t") }
    }

    @Test("blob IDs print and parse as hex")
    func ids() {
        var rng = SeededRandom(seed: 1)
        let id = BlobID(bytes: Array(rng.bytes(32)))
        #expect(BlobID(hex: id.hex) == id)
        #expect(BlobID(hex: "zz") == nil)
        #expect(id.bytes.count == 32)
        let known = BlobID(w0: 0x0123_4567_89ab_cdef, w1: 0, w2: .max, w3: 0xfedc_ba98_7654_3210)
        #expect(known.hex == "0123456789abcdef" + "0000000000000000" + "ffffffffffffffff" + "fedcba9876543210")
        #expect(known.short == "01234567")
    }

    @Test("the index table: every blob found after growing, absent ones not, the first location kept, IDs that share a first word or a fingerprint told apart")
    func blobTable() {
        var rng = SeededRandom(seed: 2)
        func location(_ n: Int) -> BlobLocation {
            BlobLocation(pack: UInt32(n % 7), offset: UInt32(n), length: 1, rawLength: 1, type: .data)
        }
        var table = BlobTable()
        #expect(table[BlobID(bytes: Array(rng.bytes(32)))] == nil)
        var ids: [BlobID] = []
        for n in 0..<50_000 {
            let id = BlobID(bytes: Array(rng.bytes(32)))
            ids.append(id)
            #expect(table.insert(id, location(n)) == nil)
        }
        // Same first word (same bucket), same fingerprint, only the last word differs.
        let base = ids[0]
        let twins = (1...40).map { BlobID(w0: base.w0, w1: base.w1, w2: base.w2, w3: base.w3 &+ UInt64($0)) }
        for (k, twin) in twins.enumerated() { #expect(table.insert(twin, location(100_000 + k)) == nil) }
        #expect(table.count == 50_040)
        var found = 0
        for (n, id) in ids.enumerated() where table[id] == location(n) { found += 1 }
        #expect(found == 50_000)
        #expect(twins.enumerated().allSatisfy { table[$0.element] == location(100_000 + $0.offset) })
        // A blob added again keeps its first location and says which it was.
        #expect(table.insert(ids[7], location(999)) == location(7))
        #expect(table[ids[7]] == location(7))
        #expect(table.count == 50_040)
        var absent = 0
        for _ in 0..<10_000 where table[BlobID(bytes: Array(rng.bytes(32)))] == nil { absent += 1 }
        #expect(absent == 10_000)
        var reserved = BlobTable()
        reserved.reserve(1000)
        for id in ids.prefix(3000) { _ = reserved.insert(id, location(0)) }
        #expect(ids.prefix(3000).allSatisfy { reserved[$0] != nil })
    }
}
