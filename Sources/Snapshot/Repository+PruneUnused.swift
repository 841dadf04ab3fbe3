import Repository

extension Repository {
    /// Deletes the data no snapshot in `snapshots` (all the repository's snapshots, read by the caller)
    /// uses, and repacks packs more than `maxUnused` unused. The caller holds an exclusive lock.
    public func pruneUnused(keeping snapshots: [SnapshotManifest], maxUnused: Double = 0.5,
                            dryRun: Bool = false) async throws -> PruneReport {
        try await loadIndex()
        let used = try await SnapshotWalker(repository: self).usedBlobs(snapshots)
        return try await prune(used: used, maxUnusedFraction: maxUnused, dryRun: dryRun)
    }
}
