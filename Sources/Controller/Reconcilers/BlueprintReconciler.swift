import Foundation
import Kube
import Protection

/// Blueprints: checked when written, so a mistake shows as `Ready: False` with the field it is in — long
/// before a backup needs it (a backup of a workload that names an invalid blueprint fails with the same
/// message).
struct BlueprintReconciler {
    let context: ControllerContext

    func reconcile(_ key: ObjectKey) async throws -> Duration? {
        guard let object = try await context.fetch(key) else { return nil }
        let condition: Condition
        do {
            let blueprint = try Blueprint(json: object.json)
            condition = Condition("Ready", true, reason: "Valid", message: "actions: \(blueprint.actionNames.joined(separator: ", "))")
        } catch {
            condition = Condition("Ready", false, reason: "InvalidBlueprint", message: error.description)
        }
        try await context.setCondition(condition, on: object)
        return nil
    }
}
