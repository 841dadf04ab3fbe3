import Concurrent
import Foundation
import Storage

/// What `check` found at the repository level.
public struct RepositoryCheckReport: Sendable {
    public var errors: [String] = []
    public var warnings: [String] = []
    /// Packs that are missing, truncated or fail verification.
    public var damagedPacks: Set<BlobID> = []
    /// Blobs that cannot be read intact (in damaged packs and not stored intact elsewhere).
    public var damagedBlobs: Set<BlobID> = []
    public var indexFiles = 0
    public var packs = 0
    public var blobs = 0
    public var bytesRead = 0
    public var unindexedPacks: [String] = []
}

extension Repository {
    /// Checks structure: every index file decrypts and parses, every indexed pack exists and is at least as
    /// long as its blobs. With `readData`, also reads every pack, checks its hash, header and every blob.
    /// The index files that could be read become the in-memory index (a walk of the snapshots after the
    /// check finds what the unreadable ones leave missing) — they are decoded once.
    public func check(readData: Bool, progress: (@Sendable (Int, Int) -> Void)? = nil) async throws
        -> RepositoryCheckReport {
        var report = RepositoryCheckReport()
        let store = self.store
        // The packs present (a directory read per prefix on a file system) are listed while the index is read.
        async let listing = Self.wrapStorage { try await store.list(.data) }
        let (files, failed) = try await readIndexFiles(tolerating: { _ in true })
        for (name, error) in failed.sorted(by: { $0.name < $1.name }) {
            report.errors.append("index/\(name): \(error.description)")
        }
        report.indexFiles = files.count
        // The index holds each blob once: its count is the number of distinct blobs.
        report.blobs = installIndex(files)

        // pack → its blobs per index (the first index wins; all copies are compared against the header).
        var packBlobs: [BlobID: [PackedBlob]] = [:]
        for (_, file) in files {
            for pack in file.packs where packBlobs[pack.id] == nil { packBlobs[pack.id] = pack.blobs }
        }
        report.packs = packBlobs.count
        // The walk of the snapshots that follows a check reads every tree: the disk starts on them now.
        let treePacks = packBlobs.filter { $0.value.contains { $0.type == .tree } }.map { BlobHandle(.data, $0.key.hex) }
        Task(priority: .low) { await store.prefetch(treePacks) }

        let present = Dictionary(try await listing.map { ($0.name, $0.size) }, uniquingKeysWith: { a, _ in a })
        for (pack, blobs) in packBlobs {
            let end = blobs.map { Int($0.offset) + Int($0.length) }.max() ?? 0
            guard let size = present[pack.hex] else {
                report.errors.append("pack \(pack.hex) is in the index but missing from the repository")
                report.damagedPacks.insert(pack)
                continue
            }
            if size < end + 4 {
                report.errors.append("pack \(pack.hex) is truncated: \(size) bytes, its blobs need \(end + 4)")
                report.damagedPacks.insert(pack)
            }
        }
        for name in present.keys where BlobID(hex: name).map({ packBlobs[$0] == nil }) ?? true {
            report.unindexedPacks.append(name)
        }
        if !report.unindexedPacks.isEmpty {
            report.warnings.append("\(report.unindexedPacks.count) pack(s) are not in any index (left by an interrupted backup or prune); `cairn prune` removes them")
        }

        if readData {
            let toRead = packBlobs.keys.filter { !report.damagedPacks.contains($0) }.sorted()
            let total = toRead.count
            var done = 0
            let work = toRead.map { ($0, packBlobs[$0]!) }
            try await Concurrent.forEach(work, width: 3, { pack, blobs in
                (pack, await self.verifyPack(pack, indexed: blobs))
            }) { pack, problems in
                done += 1
                progress?(done, total)
                report.bytesRead += present[pack.hex] ?? 0
                if !problems.isEmpty {
                    report.damagedPacks.insert(pack)
                    report.errors += problems
                }
            }
        }
        // A blob of a damaged pack is damaged unless an intact pack holds it too (only these blobs are
        // looked up: memory stays with the index files, not a map of every blob's packs).
        if !report.damagedPacks.isEmpty {
            var candidates = Set(report.damagedPacks.flatMap { packBlobs[$0] ?? [] }.map(\.id))
            for (pack, blobs) in packBlobs where !report.damagedPacks.contains(pack) {
                for b in blobs where candidates.contains(b.id) { candidates.remove(b.id) }
            }
            report.damagedBlobs = candidates
        }
        return report
    }

    /// Reads a whole pack and verifies its name, header and every blob; returns the problems found.
    func verifyPack(_ pack: BlobID, indexed: [PackedBlob]) async -> [String] {
        let data: Data
        do {
            data = try await store.load(BlobHandle(.data, pack.hex))
        } catch {
            return ["pack \(pack.hex) cannot be read: \(error)"]
        }
        var problems: [String] = []
        if BlobID.sha256(data) != pack {
            problems.append("pack \(pack.hex): content does not match its name (damaged bytes)")
        }
        let header: [PackedBlob]
        do {
            header = try PackFormat.readHeader(pack: data, cipher: cipher, location: "data/\(pack.hex)")
        } catch {
            problems.append("pack \(pack.hex): \(error)")
            header = indexed
        }
        if Set(header) != Set(indexed) {
            problems.append("pack \(pack.hex): header and index disagree about its blobs")
        }
        for blob in indexed {
            let end = Int(blob.offset) + Int(blob.length)
            guard end <= data.count else {
                problems.append("pack \(pack.hex): blob \(blob.id.short) lies beyond the end")
                continue
            }
            let location = BlobLocation(pack: 0, offset: blob.offset, length: blob.length, rawLength: blob.rawLength,
                                        type: blob.type)
            do {
                _ = try decryptBlob(data.subdata(in: Int(blob.offset)..<end), id: blob.id, location: location, pack: pack)
            } catch {
                problems.append("pack \(pack.hex): blob \(blob.id.short) (\(blob.type)) fails verification")
            }
        }
        return problems
    }
}
