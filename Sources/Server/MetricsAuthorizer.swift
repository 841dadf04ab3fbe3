import Crypto
import Foundation
import Kube
import Synchronization

/// Who may read `/metrics` (whose labels name every application's namespace): callers with a bearer
/// token that the API server authenticates (TokenReview) and authorizes for `get` on the non-resource
/// URL `/metrics` (SubjectAccessReview) — as kube-rbac-proxy does; grant it with the ClusterRole
/// `cairn-metrics-reader`. Answers are cached for a minute by the token's SHA-256 (never the token).
public final class MetricsAuthorizer: Sendable {
    public enum Verdict: Sendable, Equatable {
        case allowed
        /// No token, or one the API server does not accept.
        case unauthenticated
        case forbidden(String)
    }

    let client: KubeClient
    let cache = Mutex<[String: (verdict: Verdict, until: ContinuousClock.Instant)]>([:])
    static let tokenReviews = APIResource(group: "authentication.k8s.io", version: "v1", name: "tokenreviews",
                                          kind: "TokenReview", namespaced: false)
    static let subjectAccessReviews = APIResource(group: "authorization.k8s.io", version: "v1", name: "subjectaccessreviews",
                                                  kind: "SubjectAccessReview", namespaced: false)

    public init(client: KubeClient) {
        self.client = client
    }

    /// The verdict on an `Authorization` header value.
    public func verdict(authorization: String?) async -> Verdict {
        guard let authorization, authorization.hasPrefix("Bearer "), authorization.count > 7 else { return .unauthenticated }
        let token = String(authorization.dropFirst(7))
        let key = SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0[key] }), hit.until > now { return hit.verdict }
        let verdict = await review(token)
        cache.withLock { entries in
            if entries.count > 1000 { entries = entries.filter { $0.value.until > now } }
            entries[key] = (verdict, now + .seconds(60))
        }
        return verdict
    }

    func review(_ token: String) async -> Verdict {
        do {
            var review = KubeObject(apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", name: "")
            review["spec"] = ["token": .string(token)]
            let answer = try await client.create(review, as: Self.tokenReviews)
            guard answer["status", "authenticated"]?.bool == true, let user = UserInfo(json: answer["status", "user"]) else {
                return .unauthenticated
            }
            var access = KubeObject(apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview", name: "")
            var spec = user.json
            spec["user"] = spec["username"]
            spec["username"] = nil
            spec["nonResourceAttributes"] = ["path": "/metrics", "verb": "get"]
            access["spec"] = spec
            let decision = try await client.create(access, as: Self.subjectAccessReviews)
            return decision["status", "allowed"]?.bool == true
                ? .allowed : .forbidden("\(user.username) may not get /metrics")
        } catch {
            return .forbidden("the API server could not review the token")
        }
    }
}
