import Foundation
@testable import Repository
import Storage
import Testing

@Suite("Receive tokens")
struct ReceiveTokenTests {
    let location = ReceiveToken.Location(s3: .init(bucket: "dr", prefix: "shop", endpoint: "http://10.254.255.1:9000",
                                                   region: nil, pathStyle: true, insecure: true))

    func issue(_ store: MemoryBlobStore, expires: Date? = Date().addingTimeInterval(86_400), audience: String? = "cluster-b")
        async throws -> (Repository, ReceiveToken, String) {
        let repo = try await newRepository(store, password: "the owner's password")
        let token = try await ReceiveToken.issue(for: repo, location: location, expires: expires, audience: audience,
                                                 label: "export shop", issuer: "cluster-a")
        return (repo, token, try token.encoded())
    }

    func rejection(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "accepted"
        } catch let error as RepositoryError {
            return error.code == .tokenRejected ? error.message : "\(error.code): \(error.message)"
        } catch {
            return "\(error)"
        }
    }

    @Test("a token opens the repository for its cluster, with its own key; the text holds no password of the owner")
    func opens() async throws {
        let store = MemoryBlobStore()
        let (repo, issued, text) = try await issue(store)
        #expect(text.hasPrefix("cairn-receive-v1."))
        #expect(!text.contains("owner"))
        let token = try ReceiveToken.decode(text)
        #expect(token.location == location && token.key == issued.key)
        let opened = try await token.open(store: store, clusterID: "cluster-b")
        #expect(opened.config.id == repo.config.id && opened.keyName == issued.key)
        #expect(opened.keyGrant?.label == "export shop")
        #expect(!"\(token)".contains(token.password))
    }

    @Test("tampered, expired, revoked, wrong-cluster and wrong-repository tokens are refused, each saying why")
    func refused() async throws {
        let store = MemoryBlobStore()
        let (repo, token, text) = try await issue(store)

        // One character changed.
        var chars = Array(text)
        let i = chars.count / 2
        chars[i] = chars[i] == "A" ? "B" : "A"
        let altered = await rejection { _ = try ReceiveToken.decode(String(chars)) }
        #expect(altered.contains("damaged"), "\(altered)")
        let notAToken = await rejection { _ = try ReceiveToken.decode("hello") }
        #expect(notAToken.contains("not a Cairn receive token"))

        // Another cluster.
        let otherCluster = await rejection { _ = try await token.open(store: store, clusterID: "cluster-c") }
        #expect(otherCluster.contains("issued for another cluster"), "\(otherCluster)")

        // A holder who rewrites the terms (and the checksum, since it knows the password) gains nothing: the
        // key file's terms count.
        var forged = token
        forged.grant = KeyFile.Grant(purpose: "receive", issued: Date(), expires: nil, audience: "cluster-c", label: nil)
        let reread = try ReceiveToken.decode(try forged.encoded())
        let forgedResult = await rejection { _ = try await reread.open(store: store, clusterID: "cluster-c") }
        #expect(forgedResult.contains("issued for another cluster"), "\(forgedResult)")

        // Expired: the key file's date, checked at open.
        let expired = await rejection { _ = try await token.open(store: store, clusterID: "cluster-b", now: Date().addingTimeInterval(2 * 86_400)) }
        #expect(expired.contains("expired at"), "\(expired)")

        // Another repository at the location.
        let elsewhere = MemoryBlobStore()
        _ = try await newRepository(elsewhere)
        let other = await rejection { _ = try await token.open(store: elsewhere, clusterID: "cluster-b") }
        #expect(other.contains("no longer in the repository") || other.contains("holds repository"), "\(other)")

        // Revoked: its key removed by the owner.
        try await repo.removeKey(name: token.key)
        let revoked = await rejection { _ = try await token.open(store: store, clusterID: "cluster-b") }
        #expect(revoked.contains("was revoked"), "\(revoked)")
    }

    @Test("expired tokens' keys are removed, the others stay")
    func expiredRemoved() async throws {
        let store = MemoryBlobStore()
        let (repo, live, _) = try await issue(store)
        let old = try await ReceiveToken.issue(for: repo, location: location, expires: Date().addingTimeInterval(-60), audience: nil,
                                               label: nil, issuer: nil)
        #expect(try await ReceiveToken.removeExpired(from: repo) == 1)
        let names = try await repo.listKeys().map(\.name)
        #expect(names.contains(live.key) && !names.contains(old.key) && names.contains(repo.keyName))
    }
}
