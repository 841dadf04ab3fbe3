import Concurrent
import Crypto
import Foundation
import Logging
import Storage
import Synchronization

/// An open, unlocked repository: the content store for snapshots.
///
/// Thread-safe; many tasks save and load blobs at once. Blobs saved with `saveBlob` become durable and
/// indexed in batches; call `flush()` before writing anything that refers to them (a snapshot).
public final class Repository: Sendable {
    public let store: any BlobStore
    public let config: RepositoryConfig
    public let chunker: Chunker
    /// Name of the key file the password opened, and that key's terms if it was made to be handed out.
    public let keyName: String
    public let keyGrant: KeyFile.Grant?
    let master: MasterKey
    let cipher: BlobCipher
    let idKeyBytes: Data
    let logger: Logger
    let state: Mutex<WriteState>
    /// At most one full pack is written (write + fsync) at a time.
    let packWrites = AsyncSemaphore(permits: 1)
    /// Full packs are written in the background while blobs go on being placed; a blob that fills a pack
    /// while this many are still being written waits for the oldest, so memory stays bounded when storage is
    /// slower than the CPU.
    static let packsWrittenBehind = 2

    /// Packs written whose index entries are not yet in an index file trigger an index write at this count.
    static let packsPerIndexFile = 4

    let packMemory: PackMemory

    struct WriteState {
        var index = MasterIndex()
        var pending: Set<BlobID> = []
        /// The pack each type of blob is placed in: trees apart from file data, so what reads only trees
        /// (check, listing, the walk of a restore, a backup's parent) reads them back to back.
        var openPacks: [BlobType: PackBuffer] = [:]
        var unindexed: [IndexFile.Pack] = []
        var lastIndexWrite = Date()
        /// Packs that could not be stored, since the repository was opened, and the last storage cause.
        var lostPacks = 0
        var lastLoss: StorageError?
        /// Full packs being written in the background, by the order they filled up; each task gives the
        /// error that lost its pack. A pack is here from the moment it leaves `openPacks` (under the same
        /// lock), so a flush always finds every pack that may hold blobs saved before it.
        var writing: [Int: Task<(any Error)?, Never>] = [:]
        var writesStarted = 0
    }

    init(store: any BlobStore, config: RepositoryConfig, master: MasterKey, keyName: String, keyGrant: KeyFile.Grant? = nil,
         logger: Logger) {
        self.store = store
        self.keyGrant = keyGrant
        self.config = config
        self.master = master
        self.cipher = master.cipher
        self.idKeyBytes = master.id
        self.keyName = keyName
        self.chunker = Chunker(parameters: config.chunker)
        self.logger = logger
        let memory = PackMemory(capacity: config.packSize + config.chunker.maxSize + (1 << 20))
        self.packMemory = memory
        self.state = Mutex(WriteState())
    }

    // MARK: - Creating and opening


    /// Creates a new repository in an empty store and returns it opened.
    /// With `pairedWith`, the new repository takes that repository's chunker and blob-ID key (and a key of
    /// its own for encryption): blobs then have the same IDs in both, so copies between them
    /// (`Repository+Copy`) send only what the destination lacks.
    public static func initialize(store: any BlobStore, password: String, config: RepositoryConfig = .new(),
                                  pairedWith source: Repository? = nil,
                                  logger: Logger = Logger(label: "cairn.repository")) async throws -> Repository {
        var config = config
        if let source { config.chunker = source.config.chunker }
        guard !password.isEmpty else {
            throw RepositoryError(.invalidArgument, "an empty password is not allowed")
        }
        if let fs = store as? FileBlobStore {
            try wrapStorage { try fs.create() }
        }
        if try await wrapStorage({ try await store.exists(BlobHandle(.config, "format")) }) {
            throw RepositoryError(.invalidArgument, "a repository already exists here", location: store.location)
        }
        var master = MasterKey.generate()
        if let source { master.id = source.master.id }
        let key = try KeyFile.create(master: master, password: password)
        let keyData = try JSONEncoder.sorted.encode(key)
        let keyName = BlobID.sha256(keyData).hex
        let repo = Repository(store: store, config: config, master: master, keyName: keyName, logger: logger)
        try await wrapStorage { try await store.save(BlobHandle(.keys, keyName), data: keyData) }
        do {
            // The config is created, never replaced: of two Cairns creating a repository in one place at once
            // (two exports to a new destination), one writes it and the other opens that repository.
            try await store.save(BlobHandle(.config, "config"), data: try repo.sealFile(
                JSONEncoder.sorted.encode(config), kind: .config), options: SaveOptions(createOnly: true))
        } catch let error as StorageError where error.code == .alreadyExists {
            try? await store.remove(BlobHandle(.keys, keyName))
            return try await finishCreation(store: store, password: password, logger: logger)
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
        try await writeFormatMarker(store, version: config.version)
        return repo
    }

    /// A creation begun by another Cairn, or interrupted, after its config was written: finished (the format
    /// marker written) and opened when `password` opens that config.
    static func finishCreation(store: any BlobStore, password: String, logger: Logger) async throws -> Repository {
        do {
            if try await wrapStorage({ try await store.exists(BlobHandle(.config, "format")) }) {
                return try await open(store: store, password: password, logger: logger)
            }
            let repo = try await unlock(store: store, password: password, keyName: nil, version: nil, logger: logger)
            try await writeFormatMarker(store, version: repo.config.version)
            return repo
        } catch let error as RepositoryError where error.code == .wrongPassword {
            throw RepositoryError(.invalidArgument,
                                  "a repository was created here at the same moment with another password, or such a creation was interrupted before its format marker (config/config without config/format: when no other Cairn is creating one, remove config/config and keys/ there and try again)",
                                  location: store.location)
        }
    }

    /// The marker goes last: a store holds a repository only once everything else is durable. A marker that
    /// is already there (written by the other of two Cairns finishing one creation) is the same marker.
    static func writeFormatMarker(_ store: any BlobStore, version: Int) async throws {
        do {
            try await store.save(BlobHandle(.config, "format"),
                                 data: try JSONEncoder.sorted.encode(FormatMarker(cairn: "repository", version: version)),
                                 options: SaveOptions(createOnly: true))
        } catch let error as StorageError where error.code == .alreadyExists {
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
    }

    /// Opens an existing repository with a password; with `keyName`, with that key file only (a receive
    /// token's key: `.revoked` when it is gone). `readAhead`: the kinds of files the caller reads next (the
    /// index, the snapshots), which a file system starts reading while the key is derived.
    public static func open(store: any BlobStore, password: String, keyName: String? = nil, readAhead: [BlobKind] = [],
                            logger: Logger = Logger(label: "cairn.repository")) async throws -> Repository {
        if !readAhead.isEmpty {
            Task(priority: .low) { for kind in readAhead { await store.prefetch(every: kind) } }
        }
        let markerData: Data
        do {
            markerData = try await store.load(BlobHandle(.config, "format"))
        } catch let error as StorageError where error.code == .notFound {
            throw RepositoryError(.notARepository,
                                  "no Cairn repository here",
                                  location: store.location)
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
        guard let marker = try? JSONDecoder().decode(FormatMarker.self, from: markerData), marker.cairn == "repository"
        else {
            throw RepositoryError(.notARepository, "the format marker is not a Cairn repository marker",
                                  location: store.location)
        }
        guard marker.version <= RepositoryConfig.formatVersion else {
            throw RepositoryError(.newerFormat,
                                  "this repository uses format \(marker.version), written by a newer Cairn; this Cairn reads format \(RepositoryConfig.formatVersion) — upgrade Cairn",
                                  location: store.location)
        }
        return try await unlock(store: store, password: password, keyName: keyName, version: marker.version, logger: logger)
    }

    /// The repository whose config a key file opened with `password` (`keyName`: that key file only)
    /// authenticates. A key whose master key does not open the config (left by a creation that lost a race)
    /// is passed over; `version`: the format marker's, which the config must match.
    static func unlock(store: any BlobStore, password: String, keyName: String?, version: Int?,
                       logger: Logger) async throws -> Repository {
        let keys = try await wrapStorage { try await store.list(.keys) }
        guard !keys.isEmpty else {
            throw RepositoryError(.corrupt, "the repository has no key files; it cannot be opened",
                                  location: store.location)
        }
        if let keyName, !keys.contains(where: { $0.name == keyName }) {
            throw RepositoryError(.revoked, "the key \(keyName.prefix(8)) is no longer in the repository: it was revoked",
                                  location: store.location)
        }
        var unopened: (any Error)?
        for info in keys.sorted(by: { $0.name < $1.name }) where keyName == nil || info.name == keyName {
            let data = try await wrapStorage { try await store.load(BlobHandle(.keys, info.name)) }
            guard let keyFile = try? JSONDecoder.iso.decode(KeyFile.self, from: data) else {
                logger.warning("repository.key.malformed", metadata: ["cairn.key": "\(info.name)"])
                continue
            }
            guard let master = try keyFile.open(password: password) else { continue }
            let probe = Repository(store: store, config: .new(), master: master, keyName: info.name, logger: logger)
            let configData = try await wrapStorage { try await store.load(BlobHandle(.config, "config")) }
            let plain: Data
            do {
                plain = try probe.openFile(configData, kind: .config, location: "config")
            } catch {
                logger.warning("repository.key.foreign", metadata: ["cairn.key": "\(info.name.prefix(8))"])
                unopened = error
                continue
            }
            guard let config = try? JSONDecoder.iso.decode(RepositoryConfig.self, from: plain) else {
                throw RepositoryError.corrupt("repository config", "config", "malformed")
            }
            try config.validate()
            guard version == nil || config.version == version else {
                throw RepositoryError.corrupt("format marker", "format", "does not match the encrypted config")
            }
            return Repository(store: store, config: config, master: master, keyName: info.name, keyGrant: keyFile.grant,
                              logger: logger)
        }
        // The password opened a key but no key opened the config: the config is what is damaged.
        if let unopened { throw unopened }
        throw RepositoryError(.wrongPassword,
                              "wrong password: no key of this repository opens with it (tried \(keys.count))",
                              location: store.location)
    }

    // MARK: - Passwords

    /// Adds a key file for another password (with `grant`, a key to hand out); returns its name.
    public func addKey(password: String, grant: KeyFile.Grant? = nil) async throws -> String {
        guard !password.isEmpty else { throw RepositoryError(.invalidArgument, "an empty password is not allowed") }
        let data = try JSONEncoder.sorted.encode(KeyFile.create(master: master, password: password, grant: grant))
        let name = BlobID.sha256(data).hex
        try await Self.wrapStorage { try await store.save(BlobHandle(.keys, name), data: data) }
        return name
    }

    /// Lists key files (without secrets).
    public func listKeys() async throws -> [(name: String, created: Date, hostname: String, username: String, grant: KeyFile.Grant?)] {
        let infos = try await Self.wrapStorage { try await store.list(.keys) }
        var out: [(name: String, created: Date, hostname: String, username: String, grant: KeyFile.Grant?)] = []
        for info in infos {
            let data = try await Self.wrapStorage { try await store.load(BlobHandle(.keys, info.name)) }
            if let key = try? JSONDecoder.iso.decode(KeyFile.self, from: data) {
                out.append((info.name, key.created, key.hostname, key.username, key.grant))
            }
        }
        return out.sorted { $0.created < $1.created }
    }

    /// Removes a key file. The key in use and the last key cannot be removed.
    public func removeKey(name: String) async throws {
        let keys = try await Self.wrapStorage { try await store.list(.keys) }
        let matches = keys.filter { $0.name.hasPrefix(name) }
        guard matches.count == 1, let match = matches.first else {
            throw RepositoryError(.invalidArgument, matches.isEmpty ? "no key named \(name)" : "key name \(name) is ambiguous")
        }
        guard match.name != keyName else {
            throw RepositoryError(.keyInUse, "this is the key you opened the repository with; open it with another password to remove this one")
        }
        try await Self.wrapStorage { try await store.remove(BlobHandle(.keys, match.name)) }
    }

    // MARK: - Encrypted files (config, index, snapshots, locks)

    func fileAAD(_ kind: BlobKind) -> Data { Data("cairn file \(kind.rawValue)".utf8) }

    /// Encodes a metadata file: `seal(encoding ‖ payload, aad: "cairn file <kind>")`.
    func sealFile(_ plaintext: Data, kind: BlobKind) throws -> Data {
        try cipher.seal(Self.encode(plaintext, level: 3), aad: fileAAD(kind))
    }

    func openFile(_ sealed: Data, kind: BlobKind, location: String) throws -> Data {
        guard let plain = try? cipher.open(sealed, aad: fileAAD(kind)) else {
            throw RepositoryError.corrupt("\(kind.rawValue) file", location, "authentication failed")
        }
        return try Self.decode(plain, location: location)
    }

    /// Saves an encrypted metadata file named by the SHA-256 of its bytes; returns the name.
    public func saveFile(_ plaintext: Data, kind: BlobKind) async throws -> BlobID {
        let sealed = try sealFile(plaintext, kind: kind)
        let id = BlobID.sha256(sealed)
        try await Self.wrapStorage { try await store.save(BlobHandle(kind, id.hex), data: sealed) }
        return id
    }

    /// Loads and decrypts a metadata file, checking its name against its content.
    public func loadFile(_ kind: BlobKind, name: String) async throws -> Data {
        let location = "\(kind.rawValue)/\(name)"
        let sealed: Data
        do {
            sealed = try await store.load(BlobHandle(kind, name))
        } catch let error as StorageError where error.code == .notFound {
            throw RepositoryError(.missing, "no such \(kind.rawValue) file", location: location)
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
        guard BlobID.sha256(sealed).hex == name else {
            throw RepositoryError.corrupt("\(kind.rawValue) file", location, "content does not match its name")
        }
        return try openFile(sealed, kind: kind, location: location)
    }

    /// Names of all files of a kind.
    public func listFiles(_ kind: BlobKind) async throws -> [String] {
        try await Self.wrapStorage { try await store.list(kind) }.map(\.name)
    }

    /// Files of a kind that the store protects (object-lock retention) and must not be removed yet.
    public func protectedFiles(_ kind: BlobKind) async throws -> [String: Date] {
        try await Self.wrapStorage { try await store.protectedObjects(kind) }
    }

    public func removeFile(_ kind: BlobKind, name: String) async throws {
        try await Self.wrapStorage { try await store.remove(BlobHandle(kind, name)) }
    }

    // MARK: - Blob payload encoding

    /// `encoding ‖ payload`: 0 = stored, 1 = zstd. Data that looks random (byte entropy of a sample above
    /// 7.95 bits) is stored without trying, and compression is kept only when it saves at least 2%.
    static func encode(_ plaintext: Data, level: Int) -> Data {
        let compressed: Data? = plaintext.withUnsafeBytes { raw -> Data? in
            guard level > 0, raw.count >= 64, !looksRandom(raw) else { return nil }
            return Zstd.compress(raw, level: Int32(level), limit: raw.count * 98 / 100, prefix: 1)
        }
        if let compressed { return compressed }
        var out = Data(capacity: plaintext.count + 1)
        out.append(0)
        out.append(plaintext)
        return out
    }

    /// Estimates the Shannon entropy of up to 8 KiB from the middle of the input. Random, encrypted and
    /// already-compressed data is close to 8 bits per byte; text is near 4–5. Costs a few microseconds.
    static func looksRandom(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard raw.count >= 4096 else { return false }
        let n = min(raw.count, 8192)
        let start = (raw.count - n) / 2
        var counts = [Int](repeating: 0, count: 256)
        for i in start..<(start + n) { counts[Int(raw[i])] += 1 }
        var entropy = 0.0
        let total = Double(n)
        for c in counts where c > 0 {
            let p = Double(c) / total
            entropy -= p * log2(p)
        }
        // An 8 KiB sample of uniform bytes measures ≈ 7.977 bits (± ~0.005). Mixed data — e.g. database
        // pages half random, half structured — measures 7.6–7.9 and still compresses well, so only
        // near-uniform samples are skipped.
        return entropy > 7.95
    }

    static func decode(_ encoded: Data, location: String, expectedSize: Int? = nil) throws -> Data {
        guard let encoding = encoded.first else { throw RepositoryError.corrupt("blob", location, "empty") }
        let payload = encoded.dropFirst()
        switch encoding {
        case 0:
            return Data(payload)
        case 1:
            guard let size = expectedSize ?? Zstd.frameContentSize(Data(payload)) else {
                throw RepositoryError.corrupt("blob", location, "zstd frame without a size")
            }
            do {
                return try Zstd.decompress(Data(payload), expectedSize: size)
            } catch {
                throw RepositoryError.corrupt("blob", location, "does not decompress")
            }
        default:
            throw RepositoryError.corrupt("blob", location, "unknown encoding \(encoding)")
        }
    }

    // MARK: - Blobs

    /// The keyed ID of a plaintext: HMAC-SHA256 under the repository's ID key.
    public func blobID(for plaintext: Data) -> BlobID {
        BlobID(bytes: Array(HMAC<SHA256>.authenticationCode(for: plaintext, using: SymmetricKey(data: idKeyBytes))))
    }

    /// Whether a blob is stored or being stored.
    public func hasBlob(_ id: BlobID) -> Bool {
        state.withLock { $0.index.contains(id) || $0.pending.contains(id) }
    }

    /// The index entry of a blob.
    public func location(of id: BlobID) -> (pack: BlobID, location: BlobLocation)? {
        state.withLock { s in s.index.lookup(id).map { (s.index.packID(of: $0), $0) } }
    }

    /// Stores a blob unless the repository has it already. Returns its ID and the number of bytes
    /// (encrypted) added to the repository, 0 for a duplicate.
    @discardableResult
    public func saveBlob(_ type: BlobType, _ plaintext: Data) async throws -> (id: BlobID, added: Int) {
        let id = blobID(for: plaintext)
        let fresh = state.withLock { s -> Bool in
            if s.index.contains(id) || s.pending.contains(id) { return false }
            s.pending.insert(id)
            return true
        }
        guard fresh else { return (id, 0) }
        let sealed: Data
        do {
            sealed = try cipher.seal(Self.encode(plaintext, level: config.compressionLevel),
                                     aad: PackFormat.blobAAD(type: type, id: id))
        } catch {
            _ = state.withLock { $0.pending.remove(id) }
            throw error
        }
        try await place(type: type, id: id, sealed: sealed, rawLength: plaintext.count)
        return (id, sealed.count)
    }

    /// Appends a sealed blob the caller has marked pending to the open pack, and has the pack written in the
    /// background once full.
    func place(type: BlobType, id: BlobID, sealed: Data, rawLength: Int) async throws {
        var behind: Task<(any Error)?, Never>?
        var placed: (pack: PackBuffer, batch: PackBuffer.Batch)?
        while true {
            let pack = try await openPack(for: type)
            // Place only into the pack that is still open: another task may have taken it to write it.
            let appended = try state.withLock { s -> Bool in
                guard s.openPacks[type] === pack else { return false }
                // A pack written in the background was lost since the work placing this blob began: its
                // flush would fail, so it fails now, before it reads and stores the rest.
                if let mark = Self.work, s.lostPacks > mark.lostPacks {
                    s.pending.remove(id)
                    throw Self.lostPacksError(s.lostPacks - mark.lostPacks, cause: s.lastLoss)
                }
                if let batch = pack.add(type: type, id: id, sealed: sealed, rawLength: rawLength) {
                    placed = (pack, batch)
                }
                if pack.size >= config.packSize {
                    s.openPacks[type] = nil
                    behind = writeInBackground(pack, &s)
                }
                return true
            }
            if appended { break }
        }
        if let placed {
            do {
                try await Self.wrapStorage { try await placed.pack.write(placed.batch) }
            } catch {
                // The pack can never be stored: nobody places more into it, and its blobs are saved anew.
                let taken = state.withLock { s -> Bool in
                    guard s.openPacks[type] === placed.pack else { return false }
                    s.openPacks[type] = nil
                    return true
                }
                if taken { abandon(placed.pack, because: error) }
                throw error
            }
        }
        // Storage slower than the CPU: the oldest pack being written is waited for, and a pack it lost is
        // reported now rather than at the flush.
        if let behind, let failure = await behind.value { throw failure }
    }

    /// Starts writing a pack that left `openPacks` (in the same hold of the lock, so a flush finds it); the
    /// oldest pack being written when more than `packsWrittenBehind` are, for the caller to wait for.
    func writeInBackground(_ pack: PackBuffer, _ s: inout WriteState) -> Task<(any Error)?, Never>? {
        s.writesStarted += 1
        let key = s.writesStarted
        s.writing[key] = Task {
            var failure: (any Error)?
            do { try await self.writePack(pack) } catch { failure = error }
            _ = self.state.withLock { $0.writing.removeValue(forKey: key) }
            return failure
        }
        guard s.writing.count > Self.packsWrittenBehind, let oldest = s.writing.keys.min() else { return nil }
        return s.writing[oldest]
    }

    /// Where a unit of work (a backup) starts: `flush(since:)` then fails if a pack written after this point
    /// was lost, because that pack may have held this work's blobs.
    public struct WriteMark: Sendable {
        let lostPacks: Int
    }

    public var writeMark: WriteMark { state.withLock { WriteMark(lostPacks: $0.lostPacks) } }

    /// The unit of work the current task does for this process's repositories (set by `work`).
    @TaskLocal static var work: WriteMark?

    /// Runs a unit of work (a backup, a copy) from its mark, which it passes to `flush(since:)`; every blob
    /// the work places (in its tasks and their child tasks) fails at once when a pack was lost since the
    /// mark, as the flush would, rather than after the rest is read and stored.
    public func work<T>(_ body: (WriteMark) async throws -> T) async throws -> T {
        let mark = writeMark
        return try await Self.$work.withValue(mark) { try await body(mark) }
    }

    /// A pack that will never be stored: its blobs are no longer "being stored" (later saves store them
    /// again), and every unit of work that placed blobs in it learns so at its flush.
    func abandon(_ pack: PackBuffer, because error: any Error) {
        state.withLock { s in
            for blob in pack.blobs { s.pending.remove(blob.id) }
            s.lostPacks += 1
            s.lastLoss = (error as? RepositoryError)?.storage ?? (error as? StorageError)
        }
        logger.error("repository.pack.lost", metadata: ["cairn.blobs": "\(pack.blobs.count)", "error": "\(error)"])
    }

    /// The pack blobs of `type` are appended to, created on first use.
    func openPack(for type: BlobType) async throws -> PackBuffer {
        if let pack = state.withLock({ $0.openPacks[type] }) { return pack }
        let fresh = try await newPack(for: type)
        return state.withLock { s in
            if let raced = s.openPacks[type] { return raced }   // another task created one first; ours is dropped
            s.openPacks[type] = fresh
            return fresh
        }
    }

    /// A new, empty pack: streaming into the store when it can, in memory otherwise (a pack of trees, which
    /// may stay small, then starts with a MiB and grows).
    func newPack(for type: BlobType) async throws -> PackBuffer {
        let appender = try await Self.wrapStorage { try await store.makeAppender(.data) }
        return PackBuffer(memory: packMemory, appender: appender, startSize: type == .data ? nil : 1 << 20)
    }

    /// Writes a finished pack, then records it for the next index file.
    func writePack(_ pack: PackBuffer) async throws {
        try await packWrites.acquire()
        defer { packWrites.release() }
        let blobs = pack.blobs
        let packID: BlobID
        do {
            packID = try await Self.wrapStorage { try await pack.finish(cipher: cipher, store: store) }
        } catch {
            abandon(pack, because: error)
            throw error
        }
        let batch = state.withLock { s -> [IndexFile.Pack]? in
            s.index.add(pack: packID, blobs: blobs)
            for b in blobs { s.pending.remove(b.id) }
            s.unindexed.append(IndexFile.Pack(id: packID, blobs: blobs))
            guard s.unindexed.count >= Self.packsPerIndexFile || Date().timeIntervalSince(s.lastIndexWrite) > 15
            else { return nil }
            defer { s.unindexed = []; s.lastIndexWrite = Date() }
            return s.unindexed
        }
        if let batch { try await writeIndex(IndexFile(packs: batch)) }
    }

    @discardableResult
    func writeIndex(_ file: IndexFile) async throws -> BlobID {
        try await saveFile(file.encode(), kind: .index)
    }

    /// Makes every blob saved so far durable and indexed. With `mark`, also fails when a pack written
    /// since the mark was lost (it may have held blobs of the work that took the mark, which must then not
    /// write anything that refers to them).
    public func flush(since mark: WriteMark? = nil) async throws {
        let (packs, writing) = state.withLock { s -> ([PackBuffer], [Task<(any Error)?, Never>]) in
            defer { s.openPacks = [:] }
            return (s.openPacks.sorted { $0.key.rawValue < $1.key.rawValue }.map(\.value).filter { !$0.isEmpty },
                    s.writing.sorted { $0.key < $1.key }.map(\.value))
        }
        // Every pack is written (or abandoned, its blobs then saved anew later) even when one fails.
        var failure: (any Error)?
        // A pack lost in the background fails this work if it was lost since the mark (below); without a
        // mark, whatever was lost fails it.
        for task in writing {
            if let error = await task.value, mark == nil { failure = failure ?? error }
        }
        for pack in packs {
            do { try await writePack(pack) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
        let batch = state.withLock { s -> [IndexFile.Pack] in
            defer { s.unindexed = []; s.lastIndexWrite = Date() }
            return s.unindexed
        }
        if !batch.isEmpty { try await writeIndex(IndexFile(packs: batch)) }
        if let mark {
            let (lost, cause) = state.withLock { ($0.lostPacks - mark.lostPacks, $0.lastLoss) }
            if lost > 0 { throw Self.lostPacksError(lost, cause: cause) }
        }
    }

    /// `lost` packs written during a unit of work could not be stored.
    static func lostPacksError(_ lost: Int, cause: StorageError?) -> RepositoryError {
        var error = RepositoryError(.storage, "\(lost) pack\(lost == 1 ? "" : "s") written during this work could not be stored, "
                                    + "so some of its data is missing; nothing refers to it yet — run it again")
        error.storage = cause
        if let cause { error.underlying = cause.description }
        return error
    }

    /// Loads, decrypts and verifies one blob.
    public func loadBlob(_ id: BlobID) async throws -> Data {
        guard let (pack, location) = location(of: id) else { throw Self.notIndexed(id) }
        let range = Int(location.offset)..<(Int(location.offset) + Int(location.length))
        let sealed = try await loadPackRange(pack, range, holding: "blob \(id.short)")
        return try decryptBlob(sealed, id: id, location: location, pack: pack)
    }

    /// One ranged read of a pack; a pack that is gone or shorter than the index says is `.missing`.
    func loadPackRange(_ pack: BlobID, _ range: Range<Int>, holding what: String) async throws -> Data {
        do {
            return try await store.load(BlobHandle(.data, pack.hex), range: range)
        } catch let error as StorageError where error.code == .notFound || error.code == .rangeNotSatisfiable {
            throw RepositoryError(.missing, "pack \(pack.short) holding \(what) is missing or truncated; run `cairn repo check`",
                                  location: "data/\(pack.hex)")
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
    }

    /// Splits `ids` (in order) into runs stored one after another in one pack, each spanning at most
    /// `maxBytes`: a run is read with one ranged request (one GET on object storage instead of one per
    /// blob). With `maxGap`, blobs up to that many bytes apart (others' blobs between them, read and left)
    /// still make one run.
    public func contiguousRuns(_ ids: [BlobID], maxBytes: Int = 4 << 20, maxGap: Int = 0) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var start = 0
        var previous: (pack: BlobID, end: UInt32)?
        var bytes = 0
        for (i, id) in ids.enumerated() {
            let here = location(of: id)
            if let here, let p = previous, p.pack == here.0, p.end <= here.1.offset,
               Int(here.1.offset - p.end) <= maxGap,
               bytes + Int(here.1.offset - p.end) + Int(here.1.length) <= maxBytes {
                bytes += Int(here.1.offset - p.end) + Int(here.1.length)
            } else {
                if i > start { runs.append(start..<i) }
                start = i
                bytes = Int(here?.1.length ?? 0)
            }
            previous = here.map { ($0.0, $0.1.offset + $0.1.length) }
        }
        if ids.count > start { runs.append(start..<ids.count) }
        return runs
    }

    /// Reads a file's content and hands each of its blobs, decrypted and verified, to `work` with its
    /// offset in the file, `width` blobs at once (on any core); `collect` receives the results in file
    /// order, in the calling task. Blobs stored one after another in one pack are read with one request
    /// however many they are — on object storage, a file's share of a pack is one GET — and streamed blob by
    /// blob, so memory holds at most `width` blobs and the bytes of the next one, whatever the file's size.
    /// (A restore reads several files' blobs by a plan across them: `readBlobs`.)
    public func readContent<Result: Sendable>(_ content: [BlobID], width: Int = 4,
                                              _ work: @escaping @Sendable (_ plain: Data, _ offset: Int) async throws -> Result,
                                              collect: (Result) async throws -> Void) async throws {
        var offset = 0
        try await Concurrent.ordered(width: width, produce: { emit in
            for run in contiguousRuns(content, maxBytes: .max) {
                try await streamSealedRun(content[run]) { blob in
                    try await emit((blob, offset))
                    offset += Int(blob.location.rawLength)
                }
            }
        }, { (blob: SealedBlob, at: Int) in
            try await work(try self.decryptBlob(blob.sealed, id: blob.id, location: blob.location, pack: blob.pack), at)
        }, collect: collect)
    }

    /// Reads each blob of `ids` once, as stored: grouped by pack (the packs in the order `ids` first needs
    /// them), by offset within a pack, blobs up to `maxGap` or the store's `readGap` apart (whichever is
    /// larger) in one streamed request — on object storage, the share of a pack they hold is one GET however many
    /// blobs it is. Each blob, decrypted and verified, goes to `work` with its ID, `width` at once on any
    /// core; `collect` receives the results in the calling task, in the order the blobs were read. A blob
    /// that cannot be read — not in the index, damaged, in a pack that is missing or cut short — goes to
    /// `work` as a failure, so it fails only what holds it (when a run fails, the blobs it did not hand on are
    /// read again one by one); a storage error (the store cannot be reached) is thrown. With `width` 1,
    /// everything runs in the calling task. Memory holds at most `width` blobs and the bytes of the next one.
    public func readBlobs<Output: Sendable>(_ ids: some Sequence<BlobID>, maxGap: Int = 0, width: Int = 4,
                                            _ work: @escaping @Sendable (BlobID, Result<Data, RepositoryError>) async throws -> Output,
                                            collect: (Output) async throws -> Void) async throws {
        var rank: [BlobID: Int] = [:]      // pack → when `ids` first needs it
        var unique: [(id: BlobID, pack: BlobID, offset: UInt32)] = []
        var seen = Set<BlobID>()
        var unknown: [BlobID] = []
        for id in ids where seen.insert(id).inserted {
            guard let (pack, place) = location(of: id) else {
                unknown.append(id)
                continue
            }
            if rank[pack] == nil { rank[pack] = rank.count }
            unique.append((id, pack, place.offset))
        }
        unique.sort { a, b in (rank[a.pack]!, a.offset) < (rank[b.pack]!, b.offset) }
        let sorted = unique.map(\.id)
        let runs = contiguousRuns(sorted, maxBytes: .max, maxGap: max(maxGap, store.readGap))
        // A blob read, decrypted and verified (or why it cannot be), handed to `work`.
        let handle: @Sendable (ReadBlob) async throws -> Output = { read in
            switch read {
            case .sealed(let blob):
                let plain: Result<Data, RepositoryError>
                do {
                    plain = .success(try self.decryptBlob(blob.sealed, id: blob.id, location: blob.location, pack: blob.pack))
                } catch let error as RepositoryError {
                    plain = .failure(error)
                }
                return try await work(blob.id, plain)
            case .failed(let id, let error):
                return try await work(id, .failure(error))
            }
        }
        // With `width` 1, in this task (no task per blob: for many small blobs and callers that run several
        // reads at once); otherwise `width` at once.
        try await Concurrent.ordered(width: width, inline: width <= 1, produce: { emit in
            // Streams `ids` (one run), handing each blob on; how many were handed, and the run's own error (its
            // pack missing or cut short) if it failed. What the receiver throws is thrown as it is.
            func stream(_ ids: ArraySlice<BlobID>) async throws -> (handed: Int, error: RepositoryError?) {
                var handed = 0
                do {
                    try await streamSealedRun(ids) { blob in
                        handed += 1
                        do { try await emit(.sealed(blob)) } catch { throw ReceiverError(error: error) }
                    }
                    return (handed, nil)
                } catch let receiver as ReceiverError {
                    throw receiver.error
                } catch let error as RepositoryError where error.code != .storage {
                    return (handed, error)
                }
            }
            for id in unknown { try await emit(.failed(id, Self.notIndexed(id))) }
            // Each run asked of the store before the one ahead of it is streamed (a file system reads it
            // ahead meanwhile), the first two at the start.
            func prefetch(_ k: Int) async {
                guard k < runs.count, let first = sorted[runs[k]].first, let last = sorted[runs[k]].last,
                      let (pack, start) = location(of: first), let (_, end) = location(of: last) else { return }
                await store.prefetch(BlobHandle(.data, pack.hex),
                                     range: Int(start.offset)..<(Int(end.offset) + Int(end.length)))
            }
            await prefetch(0)
            for (k, run) in runs.enumerated() {
                await prefetch(k + 1)
                let (handed, failed) = try await stream(sorted[run])
                guard failed != nil else { continue }
                // The blobs of the run not handed yet are read one by one (a store reads a range in pieces,
                // so blobs before a cut may have failed with it).
                for id in sorted[run].dropFirst(handed) {
                    if let error = try await stream([id]).error { try await emit(.failed(id, error)) }
                }
            }
        }, handle, collect: collect)
    }

    /// What `readBlobs` hands on: a blob as read, or one that could not be.
    private enum ReadBlob: Sendable {
        case sealed(SealedBlob)
        case failed(BlobID, RepositoryError)
    }

    /// An error of whoever receives the blobs `readBlobs` reads, kept apart from the run's own.
    private struct ReceiverError: Error { var error: any Error }

    public static func notIndexed(_ id: BlobID) -> RepositoryError {
        RepositoryError(.missing, "blob \(id.short) is not in the index; run `cairn repo check`", location: id.hex)
    }

    /// A blob as stored in its pack: encrypted, compressed, not yet verified.
    struct SealedBlob: Sendable {
        var id: BlobID
        var pack: BlobID
        var location: BlobLocation
        var sealed: Data
    }

    /// An error thrown by whoever receives the blobs of a streamed run: passed on as it is.
    private struct Passed: Error { var error: any Error }

    /// Reads blobs stored one after another in one pack (a run of `contiguousRuns`) with one ranged read,
    /// handing each one's sealed bytes to `each` as soon as they have all arrived.
    func streamSealedRun(_ ids: ArraySlice<BlobID>, _ each: (SealedBlob) async throws -> Void) async throws {
        guard let first = ids.first else { return }
        guard let (pack, _) = location(of: first) else { throw Self.notIndexed(first) }
        var places: [BlobLocation] = []
        places.reserveCapacity(ids.count)
        for id in ids {
            guard let (p, place) = location(of: id), p == pack else { throw Self.notIndexed(id) }
            places.append(place)
        }
        let range = Int(places[0].offset)..<(Int(places[places.count - 1].offset) + Int(places[places.count - 1].length))
        let what = ids.count == 1 ? "blob \(first.short)" : "\(ids.count) blobs"
        // The store ends its pieces at blob ends where it can (a file), so a blob is mostly a slice of the
        // piece it came in, not a copy; what a piece leaves of a blob waits in `pending` for the next.
        var pending = Data()
        var base = range.lowerBound     // the pack offset of the buffer's first byte
        var next = 0
        do {
            try await store.load(BlobHandle(.data, pack.hex), range: range,
                                 ends: places.map { Int($0.offset) + Int($0.length) }) { piece in
                let buffer: Data
                if pending.isEmpty {
                    buffer = piece
                } else {
                    pending.append(piece)
                    buffer = pending
                }
                var used = 0
                while next < places.count {
                    let from = Int(places[next].offset) - base
                    let to = from + Int(places[next].length)
                    guard to <= buffer.count else { break }
                    let start = buffer.startIndex
                    let blob = SealedBlob(id: ids[ids.startIndex + next], pack: pack, location: places[next],
                                          sealed: buffer[(start + from)..<(start + to)])
                    next += 1
                    used = to
                    do { try await each(blob) } catch { throw Passed(error: error) }
                }
                // What is left is part of the next blob: kept alone (no more room than it needs), copied only
                // when blobs in flight share its buffer.
                if used == 0 {
                    pending = buffer
                } else {
                    pending = used == buffer.count ? Data() : Data(buffer[(buffer.startIndex + used)...])
                    base += used
                }
            }
        } catch let passed as Passed {
            throw passed.error
        } catch let error as StorageError where error.code == .notFound || error.code == .rangeNotSatisfiable {
            throw RepositoryError(.missing, "pack \(pack.short) holding \(what) is missing or truncated; run `cairn repo check`",
                                  location: "data/\(pack.hex)")
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
        guard next == places.count else {
            throw RepositoryError(.missing, "pack \(pack.short) holding \(what) is truncated; run `cairn repo check`",
                                  location: "data/\(pack.hex)")
        }
    }

    /// Loads many blobs at once, in as few reads as their places allow (`readBlobs`), each with its own
    /// result: a damaged blob fails only itself; a storage error (the
    /// store cannot be reached) is thrown. For sets that are wanted whole (a level of trees, a batch of
    /// objects); what can be used blob by blob should stream through `readBlobs`.
    public func loadBlobsByPlace(_ ids: some Sequence<BlobID>) async throws
        -> [BlobID: Result<Data, RepositoryError>] {
        var loaded: [BlobID: Result<Data, RepositoryError>] = [:]
        try await readBlobs(ids, width: ProcessInfo.processInfo.activeProcessorCount,
                            { id, result in (id, result) }, collect: { loaded[$0.0] = $0.1 })
        return loaded
    }

    /// A blob's stored bytes authenticated (against its type and ID) and decrypted, still encoded.
    func openBlob(_ sealed: Data, id: BlobID, location: BlobLocation, pack: BlobID) throws -> Data {
        guard let encoded = try? cipher.open(sealed, aad: PackFormat.blobAAD(type: location.type, id: id)) else {
            throw RepositoryError.corrupt("blob", "data/\(pack.hex) blob \(id.short)", "authentication failed")
        }
        return encoded
    }

    func decryptBlob(_ sealed: Data, id: BlobID, location: BlobLocation, pack: BlobID) throws -> Data {
        let where_ = "data/\(pack.hex) blob \(id.short)"
        let encoded = try openBlob(sealed, id: id, location: location, pack: pack)
        let plain = try Self.decode(encoded, location: where_, expectedSize: Int(location.rawLength))
        guard plain.count == Int(location.rawLength), blobID(for: plain) == id else {
            throw RepositoryError.corrupt("blob", where_, "content does not match its ID")
        }
        return plain
    }

    // MARK: - Index

    /// Reads every index file into memory. Superseded index files are skipped. With `skippingDamaged`,
    /// index files that cannot be read are left out (their blobs then count as missing) instead of
    /// failing — for `check`, which reports them. Never for prune: it must see every index entry.
    @discardableResult
    public func loadIndex(skippingDamaged: Bool = false) async throws -> (files: Int, blobs: Int) {
        let files = try await readIndexFiles(tolerating: { skippingDamaged && $0.code == .corrupt }).files
        return (files.count, installIndex(files))
    }

    /// Makes `files` the in-memory index; returns how many blobs it holds.
    @discardableResult
    func installIndex(_ files: [(name: String, file: IndexFile)]) -> Int {
        var index = MasterIndex()
        index.reserve(files.reduce(0) { $0 + $1.file.blobCount })
        for (_, file) in files {
            for pack in file.packs { index.add(pack: pack.id, blobs: pack.blobs) }
        }
        // Packs this process wrote that no index file lists yet stay known (a reload while a backup runs
        // must not make it store their blobs again).
        return state.withLock { s in
            for pack in s.unindexed { index.add(pack: pack.id, blobs: pack.blobs) }
            s.index = index
            return index.count
        }
    }

    /// Reads and decodes all live index files, many at once. An index file whose error `tolerating`
    /// accepts is left out and returned with its error (its blobs then count as missing) instead of failing.
    func readIndexFiles(tolerating: @escaping @Sendable (RepositoryError) -> Bool = { _ in false }) async throws
        -> (files: [(name: String, file: IndexFile)], failed: [(name: String, error: RepositoryError)]) {
        let names = try await listFiles(.index)
        let read = try await Concurrent.map(names, width: 8) { name -> (String, Result<IndexFile, RepositoryError>) in
            do {
                let plain = try await self.loadFile(.index, name: name)
                return (name, .success(try IndexFile.decode(plain, location: "index/\(name)")))
            } catch let error as RepositoryError where tolerating(error) {
                return (name, .failure(error))
            }
        }
        var files: [(name: String, file: IndexFile)] = []
        var failed: [(name: String, error: RepositoryError)] = []
        for (name, result) in read {
            switch result {
            case .success(let file): files.append((name, file))
            case .failure(let error): failed.append((name, error))
            }
        }
        let superseded = Set(files.flatMap { $0.file.supersedes.map(\.hex) })
        return (files.filter { !superseded.contains($0.name) }, failed)
    }

    /// A copy of the in-memory index.
    public var index: MasterIndex { state.withLock { $0.index } }

    static func wrapStorage<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
    }

    static func wrapStorage<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StorageError {
            throw RepositoryError(error)
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }
}


extension Collection where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var result: [T] = []
        result.reserveCapacity(count)
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
