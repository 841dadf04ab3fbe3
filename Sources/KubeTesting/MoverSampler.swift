import Foundation
import Synchronization

/// The mover pods seen while something ran (`LocalCluster.sampleMovers`).
public struct MoverSample: Sendable {
    /// The most live mover pods (not being deleted) at once.
    public var most = 0
    /// Claim → the nodes its movers were scheduled to.
    public var nodes: [String: Set<String>] = [:]
}

extension LocalCluster {
    /// `body`'s result and the mover pods (label `cairn.dev/mover`) of `namespace` seen while it ran,
    /// listed every 100 ms by a thread of its own.
    public func sampleMovers<T>(in namespace: String, _ body: () async throws -> T) async throws -> (T, MoverSample) {
        let state = Mutex((stop: false, done: false, sample: MoverSample()))
        let cluster = self
        Thread.detachNewThread {
            let format = #"jsonpath={range .items[*]}{.metadata.deletionTimestamp}|{.spec.nodeName}|{.spec.volumes[0].persistentVolumeClaim.claimName}{"\n"}{end}"#
            while !state.withLock({ $0.stop }) {
                if let listed = try? cluster.kubectlBlocking(["-n", namespace, "get", "pods", "-l", "cairn.dev/mover", "-o", format]),
                   listed.status == 0 {
                    let pods = listed.stdout.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
                    let live = pods.filter { $0.count == 3 && $0[0].isEmpty }
                    state.withLock {
                        $0.sample.most = max($0.sample.most, live.count)
                        for pod in live where !pod[1].isEmpty { $0.sample.nodes[pod[2], default: []].insert(pod[1]) }
                    }
                }
                usleep(100_000)
            }
            state.withLock { $0.done = true }
        }
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        state.withLock { $0.stop = true }
        while !state.withLock({ $0.done }) { try? await Task.sleep(for: .milliseconds(50)) }
        return (try result.get(), state.withLock { $0.sample })
    }
}
