import Foundation
import Kube
import Protection

/// TransformSets: checked when written, so a mistake shows as `Ready: False` with where it is — long
/// before a restore needs it.
struct TransformSetReconciler {
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let object = try await context.fetch(key) else { return nil }
        let condition: Condition
        do {
            let set = try TransformSet(json: object.json)
            condition = Condition("Ready", true, reason: "Valid", message: "\(set.transforms.count) transform(s)")
        } catch {
            condition = Condition("Ready", false, reason: "InvalidTransform", message: error.description)
        }
        try await context.setCondition(condition, on: object)
        return nil
    }
}
