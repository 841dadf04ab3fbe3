import Foundation
import Storage

/// Where a repository lives in object storage: `s3://bucket/prefix` plus how to reach it.
public struct S3Location: Sendable, CustomStringConvertible {
    public var bucket: String
    /// Key prefix without leading or trailing slash ("" for the bucket's root).
    public var prefix: String
    public var region: String
    /// `https://s3.REGION.amazonaws.com` unless a custom endpoint (MinIO, Ceph, …) is given.
    public var endpoint: URLComponents
    public var customEndpoint: Bool
    /// Path-style (`endpoint/bucket/key`) rather than virtual-hosted-style (`bucket.endpoint/key`)
    /// addressing. Default: path-style for custom endpoints, virtual-hosted for AWS.
    public var pathStyle: Bool
    /// PEM file of the CA that signed the endpoint's certificate (self-hosted stores).
    public var caFile: String?
    /// Object-lock protection: objects are written with a retention of this many seconds (COMPLIANCE).
    public var protectionPeriod: TimeInterval?

    /// - Parameters:
    ///   - url: `s3://bucket/prefix` (the prefix is optional).
    ///   - endpoint: e.g. `https://minio.example:9000` or `http://127.0.0.1:5000`.
    public init(url: String, endpoint: String? = nil, region: String? = nil, pathStyle: Bool? = nil,
                caFile: String? = nil, protectionPeriod: TimeInterval? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard url.hasPrefix("s3://") else {
            throw S3Error.configuration("'\(url)' is not an S3 location; write s3://BUCKET/PREFIX")
        }
        let rest = url.dropFirst(5)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let bucket = String(parts.first ?? "")
        guard (3...63).contains(bucket.count),
              bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }),
              bucket.first?.isLetter == true || bucket.first?.isNumber == true
        else {
            throw S3Error.configuration("'\(bucket)' is not a valid bucket name (3–63 lower-case letters, digits, '-', '.')")
        }
        self.bucket = bucket
        var prefix = parts.count > 1 ? String(parts[1]) : ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        while prefix.hasPrefix("/") { prefix.removeFirst() }
        self.prefix = prefix
        self.region = region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        if let endpoint {
            guard var components = URLComponents(string: endpoint), let scheme = components.scheme,
                  ["http", "https"].contains(scheme.lowercased()), components.host?.isEmpty == false
            else {
                throw S3Error.configuration("the S3 endpoint '\(endpoint)' is not an http(s) URL")
            }
            components.path = ""
            self.endpoint = components
            self.customEndpoint = true
        } else {
            self.endpoint = URLComponents(string: "https://s3.\(self.region).amazonaws.com")!
            self.customEndpoint = false
        }
        self.pathStyle = pathStyle ?? customEndpoint
        if !self.pathStyle && bucket.contains(".") && self.endpoint.scheme == "https" {
            throw S3Error.configuration("bucket '\(bucket)' has dots, which break TLS with virtual-hosted addressing; use path-style")
        }
        self.caFile = caFile
        self.protectionPeriod = protectionPeriod
    }

    /// The object key of a path under the prefix.
    public func key(_ path: String) -> String { prefix.isEmpty ? path : prefix + "/" + path }

    /// Host (with port when not the default) and URL path for an object key (nil: the bucket itself).
    public func address(key: String?) -> (url: String, host: String, path: String) {
        let scheme = endpoint.scheme ?? "https"
        let endpointHost = endpoint.host ?? ""
        let defaultPort = scheme == "https" ? 443 : 80
        let port = endpoint.port.flatMap { $0 == defaultPort ? nil : $0 }
        let host = (pathStyle ? endpointHost : bucket + "." + endpointHost) + (port.map { ":\($0)" } ?? "")
        // Bucket-level requests: `/bucket` path-style (no trailing slash, which servers strip before
        // verifying the signature), `/` virtual-hosted.
        var path = pathStyle ? "/" + SigV4Signer.encode(bucket) : ""
        if let key {
            path += "/" + SigV4Signer.encode(key, keepSlash: true)
        } else if path.isEmpty {
            path = "/"
        }
        return ("\(scheme)://\(host)\(path)", host, path)
    }

    public var description: String {
        "s3://\(bucket)/\(prefix)" + (customEndpoint ? " at \(endpoint.string ?? "")" : " in \(region)")
    }
}

/// Configuration mistakes, reported as `StorageError.invalidArgument`.
public enum S3Error {
    public static func configuration(_ message: String) -> StorageError {
        StorageError(.invalidArgument, message, location: "S3 configuration")
    }
}
