import Foundation
@testable import Repository
import Testing

@Suite("Prune plan: which packs stay, move or go — decided without a store")
struct PrunePlanTests {
    static func id(_ n: Int) -> BlobID { BlobID.sha256(Data("blob \(n)".utf8)) }
    static func pack(_ n: Int) -> BlobID { BlobID.sha256(Data("pack \(n)".utf8)) }
    static func blobs(_ ids: [Int]) -> [PackedBlob] {
        ids.enumerated().map { PackedBlob(type: .data, id: id($1), offset: UInt32($0 * 100), length: 100, rawLength: 90) }
    }

    @Test("full packs stay, sparse ones are repacked, unused and vanished ones go, one copy of a blob is kept")
    func decisions() throws {
        let full = Self.pack(1), sparse = Self.pack(2), unused = Self.pack(3), gone = Self.pack(4), locked = Self.pack(5)
        let packs: [BlobID: [PackedBlob]] = [
            full: Self.blobs([1, 2, 3, 4]),
            sparse: Self.blobs([4, 5, 6, 7]),      // 4 is also in `full`; only 5 is used here
            unused: Self.blobs([8, 9]),
            gone: Self.blobs([10]),                 // indexed, missing from the store, not used
            locked: Self.blobs([11, 12]),           // protected by object lock: kept whatever it holds
        ]
        let leftover = Self.pack(99).hex
        var present = Dictionary(uniqueKeysWithValues: [full, sparse, unused, locked].map { ($0.hex, 400) })
        present[leftover] = 1234
        let used: Set<BlobID> = Set([1, 2, 3, 4, 5, 11].map(Self.id))
        let plan = try PrunePlan(packs: packs, present: present, protected: [locked.hex], used: used,
                                 maxUnusedFraction: 0.5)
        #expect(Set(plan.keep.keys) == [full, locked])
        #expect(plan.repack[sparse]?.map(\.id) == [Self.id(5)], "the copy of 4 in the fuller pack is the one kept")
        #expect(Set(plan.delete) == [unused, gone])
        #expect(plan.leftovers == [leftover])
        #expect(plan.report.packsDeleted == 2 && plan.report.packsRepacked == 1 && plan.report.protectedPacksKept == 1)
        #expect(plan.report.blobsRemoved == 2 + 3)   // unused's two, sparse's three
        #expect(plan.report.bytesFreed == 400 + 300)

        // A pack that holds a used blob nowhere else and is gone: nothing is planned, the error says so.
        var missing = present
        missing[full.hex] = nil
        let error = #expect(throws: RepositoryError.self) {
            _ = try PrunePlan(packs: packs, present: missing, protected: [locked.hex], used: used, maxUnusedFraction: 0.5)
        }
        #expect(error?.code == .missing)
        #expect(error?.description.contains(full.hex) == true)
    }

    @Test("index files are cut every 50,000 blobs in one pass over the packs (two hundred thousand here)")
    func indexBatches() {
        let packs = (0..<200_000).map { IndexFile.Pack(id: Self.pack($0), blobs: Self.blobs([$0])) }
        let batches = PrunePlan.indexBatches(packs, perFile: 50_000)
        #expect(batches.map(\.count) == [50_000, 50_000, 50_000, 50_000, 0])
        #expect(batches.flatMap { $0 }.map(\.id) == packs.map(\.id), "order kept")
        #expect(PrunePlan.indexBatches([], perFile: 50_000).map(\.count) == [0])
    }
}
