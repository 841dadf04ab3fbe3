import Crypto
import Foundation

/// AWS Signature Version 4 for S3 requests (header form), written to the specification: canonical
/// request → string to sign → HMAC chain over date, region and service → signature. Tested against the
/// worked examples of the S3 documentation.
public struct SigV4Signer: Sendable {
    public var credentials: S3Credentials
    public var region: String
    public var service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Signs a request: adds `x-amz-date`, `x-amz-content-sha256`, the session token when there is one,
    /// and `Authorization`. `path` is the already-encoded URI path; `headers` must contain `host`.
    public func sign(method: String, path: String, query: [(String, String)], headers: inout [(String, String)],
                     payloadHash: String, date: Date) {
        let (amzDate, day) = Self.timestamps(date)
        headers.removeAll { ["x-amz-date", "x-amz-content-sha256", "authorization", "x-amz-security-token"]
            .contains($0.0.lowercased()) }
        headers.append(("x-amz-date", amzDate))
        headers.append(("x-amz-content-sha256", payloadHash))
        if let token = credentials.sessionToken { headers.append(("x-amz-security-token", token)) }
        let (canonical, signedHeaders) = canonicalRequest(method: method, path: path, query: query, headers: headers,
                                                          payloadHash: payloadHash)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Array(canonical.utf8))))"
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: signingKey(day)))
        headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), "
                        + "SignedHeaders=\(signedHeaders), Signature=\(signature)"))
    }

    func signingKey(_ day: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key))
        }
        let secret = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        return hmac(hmac(hmac(hmac(secret, day), region), service), "aws4_request")
    }

    /// The canonical request and the signed-header list.
    public func canonicalRequest(method: String, path: String, query: [(String, String)], headers: [(String, String)],
                                 payloadHash: String) -> (String, String) {
        var encoded: [(String, String)] = query.map { pair in (Self.encode(pair.0), Self.encode(pair.1)) }
        encoded.sort { a, b in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        let canonicalQuery = encoded.map { pair in pair.0 + "=" + pair.1 }.joined(separator: "&")
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
                .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            merged[name.lowercased(), default: []].append(trimmed)
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        let canonical = [method, path.isEmpty ? "/" : path, canonicalQuery, canonicalHeaders, signed, payloadHash]
            .joined(separator: "\n")
        return (canonical, signed)
    }

    /// URI-encodes per SigV4: unreserved characters stay, everything else is %XX (upper case); `/` is kept
    /// only when `keepSlash` (object key paths).
    public static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                 UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func timestamps(_ date: Date) -> (String, String) {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        let day = String(format: "%04d%02d%02d", Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1, Int(tm.tm_mday))
        return (day + String(format: "T%02d%02d%02dZ", Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec)), day)
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}

extension SigV4Signer {
    public static func sha256Hex(_ bytes: some DataProtocol) -> String {
        hex(SHA256.hash(data: bytes))
    }

    public static func sha256Hex(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { hex(SHA256.hash(data: $0)) }
    }
}

import NIOCore
