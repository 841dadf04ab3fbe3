import Foundation
import Storage

/// What prune did.
public struct PruneReport: Sendable, Codable {
    public var packsDeleted = 0
    public var packsRepacked = 0
    public var packsWritten = 0
    public var leftoverPacksDeleted = 0
    public var blobsRemoved = 0
    public var bytesFreed = 0
    public var bytesRepacked = 0
    public var indexFilesReplaced = 0
    public var temporaryFilesRemoved = 0
    /// Packs and index files left in place because the store protects them (object lock) for now.
    public var protectedPacksKept = 0
    public var protectedIndexFilesKept = 0
}

/// What a prune will do, decided from the index, the store's listing and the used blobs alone — no I/O,
/// so every rule is tested without a store. `Repository.prune` gathers the inputs and executes the plan.
struct PrunePlan: Sendable {
    /// Packs kept as they are, with all their blobs (they stay indexed).
    var keep: [BlobID: [PackedBlob]] = [:]
    /// Packs whose used blobs move into new packs (then the pack is deleted).
    var repack: [BlobID: [PackedBlob]] = [:]
    /// Packs deleted outright: nothing in them is used, or they are indexed but gone already.
    var delete: [BlobID] = []
    /// Pack files no index names (left by an interrupted backup or prune).
    var leftovers: [String] = []
    /// The pack files in the store when the plan was made, with their sizes.
    let present: [String: Int]
    var report = PruneReport()

    /// - Parameters:
    ///   - packs: every indexed pack and its blobs.
    ///   - present: pack files in the store, by name, with their sizes.
    ///   - protected: pack files the store protects (object lock) now: kept whatever they hold.
    /// - Throws: `.missing` when a pack holding a used blob that no other pack holds is gone (nothing is
    ///   changed then).
    init(packs: [BlobID: [PackedBlob]], present: [String: Int], protected: Set<String>, used: Set<BlobID>,
         maxUnusedFraction: Double) throws(RepositoryError) {
        self.present = present
        // Keep exactly one copy of each used blob, preferring packs that stay as they are.
        var seen: Set<BlobID> = []
        for (pack, blobs) in packs where protected.contains(pack.hex) && present[pack.hex] != nil {
            keep[pack] = blobs
            report.protectedPacksKept += 1
            for b in blobs where used.contains(b.id) { seen.insert(b.id) }
        }
        // The fullest packs first: their copies are the ones kept. Each fraction is computed once.
        let ordered = packs.compactMap { pack, blobs -> (BlobID, Double)? in
            keep[pack] == nil ? (pack, Self.usedFraction(blobs, used)) : nil
        }.sorted { ($0.1, $0.0) > ($1.1, $1.0) }.map(\.0)
        for pack in ordered {
            let blobs = packs[pack]!
            let wanted = blobs.filter { used.contains($0.id) && !seen.contains($0.id) }
            guard present[pack.hex] != nil else {
                if !wanted.isEmpty {
                    throw RepositoryError(.missing, "pack \(pack.hex) holds blobs that snapshots need but is missing; "
                                          + "prune stopped without changing anything — run `cairn repo check`")
                }
                delete.append(pack)
                continue
            }
            let total = blobs.reduce(0) { $0 + Int($1.length) }
            let wantedBytes = wanted.reduce(0) { $0 + Int($1.length) }
            if wanted.isEmpty {
                delete.append(pack)
                report.blobsRemoved += blobs.count
                report.bytesFreed += present[pack.hex] ?? total
            } else if Double(total - wantedBytes) > maxUnusedFraction * Double(total) {
                repack[pack] = wanted
                report.blobsRemoved += blobs.count - wanted.count
                report.bytesFreed += total - wantedBytes
            } else {
                keep[pack] = blobs
            }
            for b in wanted { seen.insert(b.id) }
        }
        leftovers = present.keys.filter { name in
            !protected.contains(name) && (BlobID(hex: name).map { packs[$0] == nil } ?? false)
        }.sorted()
        report.packsDeleted = delete.count
        report.packsRepacked = repack.count
        report.leftoverPacksDeleted = leftovers.count
    }

    static func usedFraction(_ blobs: [PackedBlob], _ used: Set<BlobID>) -> Double {
        let total = blobs.reduce(0) { $0 + Int($1.length) }
        guard total > 0 else { return 0 }
        return Double(blobs.filter { used.contains($0.id) }.reduce(0) { $0 + Int($1.length) }) / Double(total)
    }

    /// Packs grouped into index files of at least `perFile` blobs each (the last one smaller), in order;
    /// always at least one (possibly empty) file, which carries the supersedes list.
    static func indexBatches(_ packs: [IndexFile.Pack], perFile: Int) -> [[IndexFile.Pack]] {
        var batches: [[IndexFile.Pack]] = []
        var current: [IndexFile.Pack] = []
        var count = 0
        for pack in packs {
            current.append(pack)
            count += pack.blobs.count
            if count >= perFile {
                batches.append(current)
                current = []
                count = 0
            }
        }
        batches.append(current)
        return batches
    }
}

extension Repository {
    /// Removes every blob not in `used`, and repacks packs where more than `maxUnusedFraction` of the bytes
    /// are unused. The caller holds an exclusive lock and computed `used` from all snapshots.
    ///
    /// Crash safety, in this order: (1) new packs are written; (2) new index files are written, the last
    /// one naming every old index file as superseded; (3) old index files are deleted; (4) obsolete packs
    /// are deleted. A crash at any point leaves every snapshot readable; leftovers go at the next prune.
    ///
    /// Objects the store protects (object-lock retention) are neither deleted nor repacked: their packs stay
    /// indexed as they are, and a later prune removes them once the retention has passed.
    public func prune(used: Set<BlobID>, maxUnusedFraction: Double = 0.5, dryRun: Bool = false) async throws
        -> PruneReport {
        let files = try await readIndexFiles().files
        var packs: [BlobID: [PackedBlob]] = [:]
        for (_, file) in files {
            for pack in file.packs where packs[pack.id] == nil { packs[pack.id] = pack.blobs }
        }
        let present = Dictionary(try await Self.wrapStorage { try await store.list(.data) }.map { ($0.name, $0.size) },
                                 uniquingKeysWith: { a, _ in a })
        let protectedPacks = try await protectedFiles(.data)
        var plan = try PrunePlan(packs: packs, present: present, protected: Set(protectedPacks.keys), used: used,
                                 maxUnusedFraction: maxUnusedFraction)
        plan.report.indexFilesReplaced = files.count
        if dryRun { return plan.report }
        return try await execute(plan, replacing: files.map(\.name))
    }

    /// Carries out a plan in the crash-safe order described at `prune`.
    func execute(_ plan: PrunePlan, replacing indexFiles: [String]) async throws -> PruneReport {
        var report = plan.report
        let protectedIndexes = try await protectedFiles(.index)
        let allIndexNames = try await listFiles(.index)

        // (1) Copy the used blobs of sparse packs into new packs. Ciphertexts move verbatim (the AAD binds
        // type and ID, not the pack), after decrypting each once so damage is not carried over.
        // Trees and file data go to packs of their own, as a backup writes them.
        var written: [IndexFile.Pack] = []
        var buffers: [BlobType: PackBuffer] = [:]
        for (pack, blobs) in plan.repack.sorted(by: { $0.key < $1.key }) {
            let data = try await Self.wrapStorage { try await store.load(BlobHandle(.data, pack.hex)) }
            for b in blobs {
                let sealed = data.subdata(in: Int(b.offset)..<(Int(b.offset) + Int(b.length)))
                let location = BlobLocation(pack: 0, offset: b.offset, length: b.length, rawLength: b.rawLength,
                                            type: b.type)
                _ = try decryptBlob(sealed, id: b.id, location: location, pack: pack)
                let buffer: PackBuffer
                if let open = buffers[b.type] { buffer = open } else { buffer = try await newPack(for: b.type) }
                try await Self.wrapStorage { try await buffer.append(type: b.type, id: b.id, sealed: sealed, rawLength: Int(b.rawLength)) }
                report.bytesRepacked += sealed.count
                if buffer.size >= config.packSize {
                    written.append(try await writeRawPack(buffer))
                    buffers[b.type] = nil
                } else {
                    buffers[b.type] = buffer
                }
            }
        }
        for (_, buffer) in buffers.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where !buffer.isEmpty {
            written.append(try await writeRawPack(buffer))
        }
        report.packsWritten = written.count

        // (2) New index files covering everything kept; the last supersedes all old ones.
        let kept = plan.keep.sorted { $0.key < $1.key }.map { IndexFile.Pack(id: $0.key, blobs: $0.value) } + written
        let batches = PrunePlan.indexBatches(kept, perFile: 50_000)
        for (i, batch) in batches.enumerated() {
            var file = IndexFile(packs: batch)
            if i == batches.count - 1 {
                // Every index file present, also ones superseded earlier but kept because protected: if
                // their superseder is deleted now, they must not come back to life.
                file.supersedes = allIndexNames.compactMap { BlobID(hex: $0) }
            }
            try await writeIndex(file)
        }
        // (3) Old index files, (4) obsolete packs, then leftovers no index names.
        for name in indexFiles {
            if protectedIndexes[name] != nil {
                report.protectedIndexFilesKept += 1
                continue
            }
            try? await removeFile(.index, name: name)
        }
        for pack in plan.delete + Array(plan.repack.keys) where plan.present[pack.hex] != nil {
            try await Self.wrapStorage { try await store.remove(BlobHandle(.data, pack.hex)) }
        }
        for name in plan.leftovers {
            report.bytesFreed += plan.present[name] ?? 0
            try await Self.wrapStorage { try await store.remove(BlobHandle(.data, name)) }
        }
        report.temporaryFilesRemoved = (try? await store.removeLeftovers()) ?? 0
        try await loadIndex()
        return report
    }

    /// Writes a pack whose blobs are already sealed; returns its index entry.
    func writeRawPack(_ pack: PackBuffer) async throws -> IndexFile.Pack {
        let id = try await Self.wrapStorage { try await pack.finish(cipher: cipher, store: store) }
        return IndexFile.Pack(id: id, blobs: pack.blobs)
    }
}
