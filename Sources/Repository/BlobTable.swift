/// Blob ID → location: the table behind `MasterIndex`, which holds every blob of a repository (a million
/// and more). Open addressing with linear probing over an array of slots; the entries themselves stay
/// dense, in the order they were added. Blob IDs are keyed hashes or SHA-256 digests — uniformly
/// distributed and not chosen by anyone without the key — so the bucket is the ID's first word times a
/// constant: no `Hasher` per lookup, one slot array of 8 bytes a bucket (at most half full), and the
/// entries at 52 bytes a blob.
struct BlobTable: Sendable {
    private(set) var ids: [BlobID] = []
    private(set) var locations: [BlobLocation] = []
    /// Per bucket: 0 when empty; else the entry's index + 1 in the low 32 bits and the high half of the
    /// ID's second word (a fingerprint: most probes that miss never touch `ids`) in the high 32.
    private var slots: [UInt64] = []
    /// 64 − log2(slots.count).
    private var shift: UInt64 = 64

    var count: Int { ids.count }

    mutating func reserve(_ n: Int) {
        ids.reserveCapacity(n)
        locations.reserveCapacity(n)
        if n * 2 > slots.count { rehash(minimumSlots: n * 2) }
    }

    @inline(__always) private func bucket(_ id: BlobID) -> Int {
        Int(truncatingIfNeeded: (id.w0 &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always) private static func fingerprint(_ id: BlobID) -> UInt64 { id.w1 & 0xFFFF_FFFF_0000_0000 }

    /// The entry index of `id`, or of the empty slot where it would go (negative: `-(slot + 1)`).
    @inline(__always) private func probe(_ id: BlobID) -> Int {
        let mask = slots.count - 1
        let print = Self.fingerprint(id)
        var i = bucket(id)
        while true {
            let slot = slots[i]
            if slot == 0 { return -(i + 1) }
            if slot & 0xFFFF_FFFF_0000_0000 == print {
                let entry = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
                if ids[entry] == id { return entry }
            }
            i = (i + 1) & mask
        }
    }

    subscript(id: BlobID) -> BlobLocation? {
        guard !slots.isEmpty else { return nil }
        let found = probe(id)
        return found >= 0 ? locations[found] : nil
    }

    func containsAll(_ ids: [BlobID]) -> Bool {
        guard !slots.isEmpty else { return ids.isEmpty }
        for id in ids where probe(id) < 0 { return false }
        return true
    }

    /// Adds `id` at `location` unless it is there already; returns the location it had then.
    mutating func insert(_ id: BlobID, _ location: BlobLocation) -> BlobLocation? {
        if (ids.count + 1) * 2 > slots.count { rehash(minimumSlots: max(16, (ids.count + 1) * 2)) }
        let found = probe(id)
        if found >= 0 { return locations[found] }
        precondition(ids.count < Int(UInt32.max), "more blobs than an index holds")
        ids.append(id)
        locations.append(location)
        slots[-found - 1] = Self.fingerprint(id) | UInt64(ids.count)
        return nil
    }

    private mutating func rehash(minimumSlots: Int) {
        var size = 16
        while size < minimumSlots { size <<= 1 }
        shift = UInt64(64 - size.trailingZeroBitCount)
        slots = [UInt64](repeating: 0, count: size)
        let mask = size - 1
        for (entry, id) in ids.enumerated() {
            var i = bucket(id)
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = Self.fingerprint(id) | UInt64(entry + 1)
        }
    }
}
