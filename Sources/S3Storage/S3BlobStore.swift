import Concurrent
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Storage

/// A repository in an S3 bucket (AWS, MinIO, Ceph, any S3-compatible store), keeping the `BlobStore`
/// contract:
///
/// - Layout mirrors the filesystem store under the prefix (`config`, `format`, `keys/…`, `data/ab/…`),
///   so a copied bucket is a valid directory repository and vice versa.
/// - A PUT is atomic by S3's own semantics; every PUT carries Content-MD5, so a body damaged in transit is
///   refused by the server, and downloads are checked against their declared length.
/// - `createOnly` sends `If-None-Match: *`. When a retried create finds the object already there, it
///   compares the stored object's MD5 with its own: equal means our first attempt landed.
/// - Objects larger than `multipartThreshold` go up in parts (`partSize`, 4 at once); an interrupted
///   multipart upload is aborted, and `removeLeftovers` aborts any left by a crashed process.
/// - With a protection period the objects (except lock files) are written with an object-lock retention
///   (COMPLIANCE mode) that even the bucket owner cannot shorten; `protectedUntil` tells the repository
///   which objects it must leave alone.
public final class S3BlobStore: BlobStore {
    public struct Options: Sendable {
        public var multipartThreshold = 32 << 20
        public var partSize = 16 << 20
        public var maxConcurrency = 32
        /// Keys per list request (S3's maximum is 1000).
        public var listPageSize = 1000
        public var retryBudget: Duration = .seconds(120)
        /// Where appended objects are spooled before upload.
        public var spoolDirectory = NSTemporaryDirectory()

        public init() {}
    }

    public let s3: S3Location
    public let options: Options
    let client: S3Client

    public var location: String { s3.description }
    public var protectionPeriod: TimeInterval? { s3.protectionPeriod }

    /// Connects and checks that the bucket exists and the credentials are accepted (and, with a
    /// protection period, that the bucket has object lock enabled).
    public static func open(_ location: S3Location, credentials: S3Credentials, options: Options = Options(),
                            logger: Logger = Logger(label: "cairn.s3")) async throws -> S3BlobStore {
        let store = try S3BlobStore(location, credentials: credentials, options: options, logger: logger)
        try await store.checkBucket()
        // A repository created with a protection period says so in the retention of its format object.
        if location.protectionPeriod == nil, let period = try await store.protectionOfExistingRepository() {
            var protected = location
            protected.protectionPeriod = period
            return try S3BlobStore(protected, credentials: credentials, options: options, logger: logger)
        }
        return store
    }

    init(_ location: S3Location, credentials: S3Credentials, options: Options, logger: Logger) throws {
        self.s3 = location
        self.options = options
        var clientOptions = S3Client.Options()
        clientOptions.retryBudget = options.retryBudget
        clientOptions.maxConcurrency = options.maxConcurrency
        self.client = try S3Client(location: location, credentials: credentials, options: clientOptions, logger: logger)
    }

    /// How many times the store slowed down because the server said SlowDown.
    public var slowDowns: Int { get async { await client.concurrency.decreases } }

    func checkBucket() async throws {
        // GetBucketLocation: proves the bucket exists and the credentials work, and tells its region.
        let answer = try await client.send(S3Client.Request(method: .GET, key: nil, query: [("location", "")],
                                                            operation: "open the repository location",
                                                            object: s3.description))
        if let xml = XMLElement.parse(answer.body), xml.name == "LocationConstraint" {
            let region = xml.text.isEmpty ? "us-east-1" : (xml.text == "EU" ? "eu-west-1" : xml.text)
            if region != s3.region {
                throw StorageError(.invalidArgument, "the bucket '\(s3.bucket)' is in region '\(region)', not '\(s3.region)'; "
                                   + "set the region to \(region)", location: s3.description)
            }
        } else if answer.status == 200 {
            throw StorageError(.invalidArgument, "open the repository location: the endpoint "
                               + "\(s3.endpoint.string ?? "") does not answer like S3; check the S3 endpoint",
                               location: s3.description)
        }
        if s3.protectionPeriod != nil {
            let lock = try await client.send(S3Client.Request(
                method: .GET, key: nil, query: [("object-lock", "")], operation: "read the bucket's object-lock configuration",
                object: s3.description), accept: [404])
            let enabled = XMLElement.parse(lock.body)?["ObjectLockEnabled"] == "Enabled"
            guard lock.status == 200, enabled else {
                throw StorageError(.invalidArgument, "a protection period needs a bucket with object lock enabled; "
                                   + "'\(s3.bucket)' has none (create the bucket with object lock)", location: s3.description)
            }
        }
    }

    func protectionOfExistingRepository() async throws -> TimeInterval? {
        let head = try await client.send(S3Client.Request(method: .HEAD, key: key(BlobHandle(.config, "format")),
                                                          operation: "read the repository's protection",
                                                          object: "config/format"), accept: [404])
        guard head.status == 200,
              let until = head.headers.first(name: "x-amz-object-lock-retain-until-date").flatMap(Self.parseDate),
              let written = head.headers.first(name: "Last-Modified").flatMap(Self.parseHTTPDate)
        else { return nil }
        return (until.timeIntervalSince(written) / 60).rounded() * 60
    }

    static func parseHTTPDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }

    func key(_ handle: BlobHandle) -> String {
        switch handle.kind {
        case .config: return s3.key(handle.name)
        case .data:
            let shard = handle.name.count >= 2 ? String(handle.name.prefix(2)) : "00"
            return s3.key("data/\(shard)/\(handle.name)")
        default: return s3.key("\(handle.kind.rawValue)/\(handle.name)")
        }
    }

    func lockHeaders(_ kind: BlobKind) -> [(String, String)] {
        guard let period = s3.protectionPeriod, kind != .locks else { return [] }
        let until = Date().addingTimeInterval(period)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return [("x-amz-object-lock-mode", "COMPLIANCE"), ("x-amz-object-lock-retain-until-date", formatter.string(from: until))]
    }

    static func md5Base64(_ bytes: some DataProtocol) -> String {
        Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
    }

    static func md5Base64(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { Data(Insecure.MD5.hash(data: $0)).base64EncodedString() }
    }

    // MARK: - BlobStore

    public func save(_ handle: BlobHandle, data: Data, options saveOptions: SaveOptions) async throws {
        if data.count > options.multipartThreshold {
            if saveOptions.createOnly, try await exists(handle) {
                throw StorageError(.alreadyExists, "upload: object already exists", location: handle.description)
            }
            try await uploadMultipart(handle, size: data.count) { offset, count in
                ByteBuffer(bytes: data[data.startIndex + offset..<data.startIndex + offset + count])
            }
            return
        }
        try await putObject(handle, body: ByteBuffer(bytes: data), md5: Self.md5Base64(data),
                            createOnly: saveOptions.createOnly)
    }

    func putObject(_ handle: BlobHandle, body: ByteBuffer, md5: String, createOnly: Bool) async throws {
        var headers: [(String, String)] = [("Content-MD5", md5), ("Content-Type", "application/octet-stream")]
        headers += lockHeaders(handle.kind)
        if createOnly { headers.append(("If-None-Match", "*")) }
        let request = S3Client.Request(method: .PUT, key: key(handle), headers: headers, body: body,
                                       operation: "upload", object: handle.description)
        do {
            _ = try await client.send(request)
        } catch let error as StorageError where error.code == .alreadyExists && createOnly {
            // A retry of our own create finds our object: same content means it landed.
            let head = try await client.send(S3Client.Request(method: .HEAD, key: key(handle), operation: "check an upload",
                                                              object: handle.description))
            let etag = head.headers.first(name: "ETag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            let ours = Data(base64Encoded: md5).map { $0.map { String(format: "%02x", $0) }.joined() }
            guard let etag, etag == ours else { throw error }
        }
    }

    public func load(_ handle: BlobHandle, range: Range<Int>?) async throws -> Data {
        var headers: [(String, String)] = []
        if let range {
            guard !range.isEmpty else { return Data() }
            headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        let response = try await client.send(S3Client.Request(method: .GET, key: key(handle), headers: headers,
                                                              operation: "download", object: handle.description))
        if let range, response.body.count != range.count {
            throw StorageError(.rangeNotSatisfiable, "download: range \(range) reaches past the end of the object",
                               location: handle.description)
        }
        return Data(response.body)
    }

    /// A GET costs a round trip and a request's price: skipping up to 1 MiB inside one read is cheaper.
    public var readGap: Int { 1 << 20 }

    public func load(_ handle: BlobHandle, range: Range<Int>, ends: [Int], pieces body: (Data) async throws -> Void) async throws {
        guard !range.isEmpty else { return }
        try await client.stream(S3Client.Request(method: .GET, key: key(handle), operation: "download",
                                                 object: handle.description), range: range) { piece in
            try await body(Data(piece.readableBytesView))
        }
    }

    public func size(of handle: BlobHandle) async throws -> Int {
        let response = try await client.send(S3Client.Request(method: .HEAD, key: key(handle), operation: "stat",
                                                              object: handle.description))
        guard let length = response.headers.first(name: "Content-Length").flatMap(Int.init) else {
            throw StorageError(.io, "stat: the answer has no Content-Length", location: handle.description)
        }
        return length
    }

    public func remove(_ handle: BlobHandle) async throws {
        // A missing object is .notFound, as the contract says; a protected one is refused.
        let head = try await client.send(S3Client.Request(method: .HEAD, key: key(handle), operation: "delete",
                                                          object: handle.description))
        if let until = head.headers.first(name: "x-amz-object-lock-retain-until-date").flatMap(Self.parseDate),
           until > Date() {
            throw StorageError(.permissionDenied, "delete: the object is protected by object lock until \(until)",
                               location: handle.description)
        }
        _ = try await client.send(S3Client.Request(method: .DELETE, key: key(handle), operation: "delete",
                                                   object: handle.description))
    }

    public func list(_ kind: BlobKind) async throws -> [BlobInfo] {
        if kind == .config {
            var infos: [BlobInfo] = []
            for name in ["config", "format"] {
                do {
                    infos.append(BlobInfo(name: name, size: try await size(of: BlobHandle(.config, name))))
                } catch let error as StorageError where error.code == .notFound {}
            }
            return infos
        }
        return try await listDetailed(kind).map { BlobInfo(name: $0.name, size: $0.size) }
    }

    public func protectedObjects(_ kind: BlobKind) async throws -> [String: Date] {
        guard let period = s3.protectionPeriod, kind != .locks else { return [:] }
        let now = Date()
        var result: [String: Date] = [:]
        let entries: [(name: String, size: Int, modified: Date?)]
        if kind == .config {
            entries = [("config", 0, Date()), ("format", 0, Date())]  // written once, kept for the period at least
        } else {
            entries = try await listDetailed(kind)
        }
        for entry in entries {
            // Retention runs from the write; a minute's margin covers clock skew between us and the store.
            let until = (entry.modified ?? now).addingTimeInterval(period + 60)
            if until > now { result[entry.name] = until }
        }
        return result
    }

    static func parseDate(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        return ISO8601DateFormatter().date(from: text)
    }

    /// A listing with modification times (what object-lock decisions need).
    public func listDetailed(_ kind: BlobKind) async throws -> [(name: String, size: Int, modified: Date?)] {
        let prefix = s3.key(kind.rawValue + "/")
        var result: [(String, Int, Date?)] = []
        var token: String?
        let dates = ISO8601DateFormatter()
        dates.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plainDates = ISO8601DateFormatter()
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", "\(options.listPageSize)")]
            if let token { query.append(("continuation-token", token)) }
            let response = try await client.send(S3Client.Request(method: .GET, key: nil, query: query,
                                                                   operation: "list", object: prefix))
            guard let xml = XMLElement.parse(response.body) else {
                throw StorageError(.io, "list: the answer is not a listing", location: prefix)
            }
            for entry in xml.all("Contents") {
                guard let key = entry["Key"], let size = entry["Size"].flatMap(Int.init) else { continue }
                let name = String(key.split(separator: "/").last ?? "")
                let stamp = entry["LastModified"] ?? ""
                result.append((name, size, dates.date(from: stamp) ?? plainDates.date(from: stamp)))
            }
            token = xml["IsTruncated"] == "true" ? xml["NextContinuationToken"] : nil
        } while token != nil
        return result
    }

    /// Aborts multipart uploads that a crashed process left under the prefix.
    public func removeLeftovers() async throws -> Int {
        let response = try await client.send(S3Client.Request(method: .GET, key: nil, query: [("uploads", ""),
                                                                                             ("prefix", s3.key(""))],
                                                              operation: "list unfinished uploads", object: s3.description))
        var removed = 0
        for upload in XMLElement.parse(response.body)?.all("Upload") ?? [] {
            guard let key = upload["Key"], let id = upload["UploadId"] else { continue }
            _ = try await client.send(S3Client.Request(method: .DELETE, key: key, query: [("uploadId", id)],
                                                       operation: "abort an unfinished upload", object: key),
                                      accept: [404])
            removed += 1
        }
        return removed
    }

    public func makeAppender(_ kind: BlobKind) async throws -> (any BlobAppender)? {
        try S3Appender(store: self, kind: kind)
    }

    // MARK: - Multipart

    /// Uploads an object in parts read by `part(offset, count)`, 4 parts at once; aborts on failure.
    func uploadMultipart(_ handle: BlobHandle, size: Int,
                         part: @escaping @Sendable (Int, Int) async throws -> ByteBuffer) async throws {
        let objectKey = key(handle)
        let create = try await client.send(S3Client.Request(
            method: .POST, key: objectKey, query: [("uploads", "")],
            headers: [("Content-Type", "application/octet-stream")] + lockHeaders(handle.kind),
            operation: "start a multipart upload", object: handle.description))
        guard let uploadID = XMLElement.parse(create.body)?["UploadId"] else {
            throw StorageError(.io, "start a multipart upload: no upload id in the answer", location: handle.description)
        }
        let partSize = max(options.partSize, (size + 9_999) / 10_000)
        let count = (size + partSize - 1) / partSize
        do {
            let etags = try await Concurrent.map(0..<count, width: 4) { index in
                let offset = index * partSize
                let body = try await part(offset, min(partSize, size - offset))
                let md5 = Self.md5Base64(body)
                let response = try await self.client.send(S3Client.Request(
                    method: .PUT, key: objectKey, query: [("partNumber", "\(index + 1)"), ("uploadId", uploadID)],
                    headers: [("Content-MD5", md5)], body: body, operation: "upload part \(index + 1) of \(count)",
                    object: handle.description))
                return response.headers.first(name: "ETag") ?? ""
            }
            var xml = "<CompleteMultipartUpload>"
            for (index, etag) in etags.enumerated() {
                xml += "<Part><PartNumber>\(index + 1)</PartNumber><ETag>\(etag.xmlEscaped)</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let complete = try await client.send(S3Client.Request(
                method: .POST, key: objectKey, query: [("uploadId", uploadID)], body: ByteBuffer(string: xml),
                operation: "complete a multipart upload", object: handle.description), accept: [404])
            if complete.status == 404 {
                // A retried completion whose first attempt landed: the upload is gone and the object is there.
                guard try await self.size(of: handle) == size else {
                    throw StorageError(.io, "complete a multipart upload: the upload vanished", location: handle.description)
                }
            } else if let error = XMLElement.parse(complete.body), error.name == "Error" {
                // S3 may report a failed completion inside a 200 answer.
                throw StorageError(.unavailable, "complete a multipart upload failed", location: handle.description,
                                   underlying: "\(error["Code"] ?? ""): \(error["Message"] ?? "")")
            }
        } catch {
            _ = try? await client.send(S3Client.Request(method: .DELETE, key: objectKey, query: [("uploadId", uploadID)],
                                                        operation: "abort a multipart upload", object: handle.description),
                                       accept: [404])
            throw error
        }
    }
}
