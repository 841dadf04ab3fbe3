import Foundation
import NIOCore
@testable import S3Storage
import Storage
import StorageTesting
import Testing

@Suite("S3 without a server: SigV4 vectors, addressing, credentials, adaptive concurrency")
struct S3LogicTests {
    // The worked examples of the S3 documentation ("Signature Calculations for the Authorization Header:
    // Transferring Payload in a Single Chunk").
    let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                                        secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                             region: "us-east-1")
    let date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z
    let host = ("host", "examplebucket.s3.amazonaws.com")

    func signature(_ method: String, _ path: String, _ query: [(String, String)], _ headers: [(String, String)],
                   _ payload: String) -> (String, [(String, String)]) {
        var all = [host] + headers
        signer.sign(method: method, path: path, query: query, headers: &all, payloadHash: payload, date: date)
        let auth = all.first { $0.0 == "Authorization" }!.1
        return (String(auth.split(separator: "=").last!), all)
    }

    @Test("GET object with a range: the published signature")
    func getObject() {
        let (sig, headers) = signature("GET", "/test.txt", [], [("Range", "bytes=0-9")], SigV4Signer.emptyPayloadHash)
        #expect(sig == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(headers.contains { $0.0 == "Authorization" && $0.1.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,") })
        let (canonical, _) = signer.canonicalRequest(method: "GET", path: "/test.txt", query: [],
                                                     headers: headers.filter { $0.0 != "Authorization" },
                                                     payloadHash: SigV4Signer.emptyPayloadHash)
        #expect(SigV4Signer.sha256Hex(Array(canonical.utf8)) == "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
    }

    @Test("PUT object with a reserved character in the key and a signed payload: the published signature")
    func putObject() {
        let payload = SigV4Signer.sha256Hex(Array("Welcome to Amazon S3.".utf8))
        #expect(payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = "/" + SigV4Signer.encode("test$file.text", keepSlash: true)
        #expect(path == "/test%24file.text")
        let (sig, _) = signature("PUT", path, [], [("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                                   ("x-amz-storage-class", "REDUCED_REDUNDANCY")], payload)
        #expect(sig == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test("bucket sub-resource and list queries: the published signatures")
    func bucketRequests() {
        #expect(signature("GET", "/", [("lifecycle", "")], [], SigV4Signer.emptyPayloadHash).0
                == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
        #expect(signature("GET", "/", [("prefix", "J"), ("max-keys", "2")], [], SigV4Signer.emptyPayloadHash).0
                == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test("locations: path-style and virtual-hosted addressing, prefixes, bad names")
    func locations() throws {
        let aws = try S3Location(url: "s3://my-bucket/team/repo/", region: "eu-west-1", environment: [:])
        #expect(aws.prefix == "team/repo" && !aws.pathStyle)
        #expect(aws.address(key: aws.key("data/ab/x y")).url == "https://my-bucket.s3.eu-west-1.amazonaws.com/team/repo/data/ab/x%20y")
        let minio = try S3Location(url: "s3://backups", endpoint: "http://127.0.0.1:9000/ignored", environment: [:])
        #expect(minio.pathStyle && minio.prefix.isEmpty && minio.region == "us-east-1")
        #expect(minio.address(key: "config").url == "http://127.0.0.1:9000/backups/config")
        #expect(minio.address(key: nil).host == "127.0.0.1:9000")
        let hosted = try S3Location(url: "s3://backups/p", endpoint: "https://s3.example.com", pathStyle: false, environment: [:])
        #expect(hosted.address(key: hosted.key("k")).url == "https://backups.s3.example.com/p/k")
        #expect(try S3Location(url: "s3://b-1/x", environment: ["AWS_REGION": "ap-south-1"]).region == "ap-south-1")
        for bad in ["s3://AB", "s3://x", "/tmp/repo", "s3://under_score/p"] {
            #expect(throws: StorageError.self) { try S3Location(url: bad, environment: [:]) }
        }
        #expect(throws: StorageError.self) { try S3Location(url: "s3://bucket", endpoint: "ftp://x", environment: [:]) }
    }

    @Test("credentials come from the environment or a profile of the shared credentials file; the secret is never shown")
    func credentials() throws {
        let env = try S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SECRET",
                                                     "AWS_SESSION_TOKEN": "TOKEN"])
        #expect(env.accessKeyID == "AK" && env.sessionToken == "TOKEN")
        #expect(!"\(env)".contains("SECRET"))
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try """
            [default]
            aws_access_key_id = DEF
            aws_secret_access_key = defsecret
            # a comment
            [backup]
            aws_access_key_id=BAK
            aws_secret_access_key=baksecret
            aws_session_token = tok
            """.write(toFile: dir.sub("credentials"), atomically: true, encoding: .utf8)
        let profile = try S3Credentials.fromEnvironment(["AWS_PROFILE": "backup", "AWS_SHARED_CREDENTIALS_FILE": dir.sub("credentials")])
        #expect(profile.accessKeyID == "BAK" && profile.secretAccessKey == "baksecret" && profile.sessionToken == "tok")
        let def = try S3Credentials.fromEnvironment(["AWS_SHARED_CREDENTIALS_FILE": dir.sub("credentials")])
        #expect(def.accessKeyID == "DEF")
        #expect(throws: StorageError.self) {
            try S3Credentials.fromEnvironment(["AWS_PROFILE": "nope", "AWS_SHARED_CREDENTIALS_FILE": dir.sub("credentials")])
        }
        #expect(throws: StorageError.self) { try S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "only"]) }
        #expect(throws: StorageError.self) { try S3Credentials.fromEnvironment(["HOME": dir.path]) }
    }

    @Test("concurrency halves on SlowDown (once per burst) and grows back on success")
    func adaptiveConcurrency() async {
        let limiter = AdaptiveConcurrency(initial: 16, minimum: 1, maximum: 32)
        for _ in 0..<3 {
            await limiter.acquire()
            await limiter.release(.slowDown)
        }
        #expect(await limiter.window == 8)  // three SlowDowns in one burst halve once
        #expect(await limiter.decreases == 1)
        for _ in 0..<200 {
            await limiter.acquire()
            await limiter.release(.success)
        }
        #expect(await limiter.window > 20)
        #expect(await limiter.window <= 32)
    }
}
