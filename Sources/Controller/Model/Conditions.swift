import Foundation
import Kube

/// A status condition as the Kubernetes API conventions define it.
public struct Condition: Sendable, Equatable {
    public var type: String
    public var status: Bool
    public var reason: String
    public var message: String

    public init(_ type: String, _ status: Bool, reason: String, message: String) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
    }
}

/// Reading and writing `status.conditions` of an object: a condition's `lastTransitionTime` changes only
/// when its status does; `observedGeneration` is the generation the reconciler acted on.
public enum Conditions {
    public static func set(_ condition: Condition, on object: inout KubeObject, now: Date = Date()) {
        var list = object["status", "conditions"]?.array ?? []
        let index = list.firstIndex { $0["type"]?.string == condition.type }
        let statusText = condition.status ? "True" : "False"
        var transition = Timestamp.format(now)
        if let index, list[index]["status"]?.string == statusText, let old = list[index]["lastTransitionTime"]?.string {
            transition = old
        }
        var entry: JSONValue = ["type": .string(condition.type), "status": .string(statusText),
                                "reason": .string(condition.reason), "message": .string(condition.message),
                                "lastTransitionTime": .string(transition)]
        if let generation = object.generation { entry["observedGeneration"] = .int(generation) }
        if let index { list[index] = entry } else { list.append(entry) }
        object["status", "conditions"] = .array(list)
        if let generation = object.generation { object["status", "observedGeneration"] = .int(generation) }
    }

    public static func get(_ type: String, of object: KubeObject) -> Condition? {
        guard let entry = object["status", "conditions"]?.array?.first(where: { $0["type"]?.string == type }) else {
            return nil
        }
        return Condition(type, entry["status"]?.string == "True", reason: entry["reason"]?.string ?? "",
                         message: entry["message"]?.string ?? "")
    }

    public static func isReady(_ object: KubeObject) -> Bool {
        get("Ready", of: object)?.status == true
    }
}
