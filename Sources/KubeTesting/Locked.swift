import Foundation
import Synchronization

/// A value written once by a reader thread and read by the waiting caller.
final class Locked: Sendable {
    private let state = Mutex<(data: Data, done: Bool)>((Data(), false))

    init(_ initial: Data) {}

    func set(_ data: Data) {
        state.withLock { $0 = (data, true) }
    }

    var done: Bool { state.withLock { $0.done } }
    var value: Data { state.withLock { $0.data } }
}

typealias Mutex = Synchronization.Mutex
