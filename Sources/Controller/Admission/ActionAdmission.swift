import Foundation
import Kube

/// What Cairn's admission webhook decides about a BackupAction, RestoreAction, ImportAction, Blueprint or
/// Policy being created or changed. Pure: an `AdmissionReview` request in, a review response out (tested
/// without a server).
///
/// Blueprints and Policies: whoever writes the spec is stamped as its author (on create, and again on every
/// update that changes the spec); the stamp cannot be changed otherwise. A namespace's blueprint runs
/// with its author's rights — never with those of whoever's backup happens to use it, nor Cairn's; an
/// import Policy's restores run with its author's.
///
/// - On create it stamps who asked (`cairn.dev/requester`: the API server's `userInfo` of the request),
///   overwriting whatever the object carried: the controller performs the action as that identity. Only
///   the controller may hand on a stamp it carries: the ImportActions of an import Policy carry its author's,
///   the restores of an ImportAction their creator's.
/// - The stamp, the spec and the `cairn.dev/policy` label never change afterwards (the action would run
///   with one person's rights and another's wishes, or count as a policy's run).
/// - `cairn.dev/policy` and the names of a policy's scheduled runs (`…-yyyyMMdd-HHmmss`) are the
///   controller's: anyone else is refused, so nobody can feed a Policy's retention or take its next slot.
public struct ActionAdmission: Sendable {
    /// The annotation that records who created an action, as JSON `{username, uid, groups, extra}`.
    public static let requesterAnnotation = "cairn.dev/requester"
    /// The kinds the webhook reviews.
    public static let kinds: Set<String> = [CairnKind.backupAction.rawValue, CairnKind.restoreAction.rawValue,
                                            CairnKind.importAction.rawValue, CairnKind.blueprint.rawValue,
                                            CairnKind.policy.rawValue]
    /// Kinds whose spec is run as whoever wrote it (restamped at every change of the spec).
    static let authored: Set<String> = [CairnKind.blueprint.rawValue, CairnKind.policy.rawValue]

    /// The controller's own username (`system:serviceaccount:<namespace>:<name>`).
    public let controllerUser: String

    public init(controllerUser: String) {
        self.controllerUser = controllerUser
    }

    public enum Decision: Equatable, Sendable {
        case allow(patch: [JSONValue])
        case deny(String)
    }

    /// The `AdmissionReview` answer to an `AdmissionReview` request.
    public func respond(to review: JSONValue) -> JSONValue {
        let request = review["request"] ?? .null
        var response: JSONValue = ["uid": request["uid"] ?? .string(""), "allowed": true]
        switch decide(request) {
        case .allow(let patch):
            if !patch.isEmpty {
                response["patchType"] = "JSONPatch"
                response["patch"] = .string(Data(JSONValue.array(patch).serialized()).base64EncodedString())
            }
        case .deny(let message):
            response["allowed"] = false
            response["status"] = ["code": 403, "reason": "Forbidden", "message": .string(message)]
        }
        return ["apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response]
    }

    public func decide(_ request: JSONValue) -> Decision {
        let kind = request["kind", "kind"]?.string ?? ""
        guard request["kind", "group"]?.string == CairnKind.group, Self.kinds.contains(kind) else {
            return .allow(patch: [])   // not ours to judge
        }
        guard let user = UserInfo(json: request["userInfo"]) else {
            return .deny("Cairn cannot tell who sent this request (no userInfo in the admission review)")
        }
        guard let object = request["object"].map(KubeObject.init) else {
            return .deny("the admission review carries no object")
        }
        let byController = user.username == controllerUser
        if Self.authored.contains(kind) {
            return decideAuthored(request, kind: kind, object: object, user: user)
        }
        switch request["operation"]?.string {
        case "CREATE":
            if !byController {
                if object.labels[CairnLabel.policy] != nil {
                    return .deny("the label \(CairnLabel.policy) is set by Cairn's controller only: a Policy's runs are created by its schedule. Remove the label")
                }
                if kind != CairnKind.restoreAction.rawValue, Self.isPolicyRunName(object.name) {
                    return .deny("names ending in -yyyyMMdd-HHmmss are kept for the scheduled runs of Policies; choose another name for \(object.name)")
                }
            } else if UserInfo.requester(of: object) != nil {
                // The controller creates it on behalf of someone the webhook recorded before: an import
                // Policy's author (its ImportActions), an ImportAction's creator (its restores).
                return .allow(patch: [])
            }
            return .allow(patch: Self.stamp(user, on: object))
        case "UPDATE":
            guard let old = request["oldObject"].map(KubeObject.init) else {
                return .deny("the admission review of an update carries no old object")
            }
            if old.annotations[Self.requesterAnnotation] != object.annotations[Self.requesterAnnotation] {
                return .deny("the annotation \(Self.requesterAnnotation) records who created this \(kind) and cannot be changed")
            }
            if old["spec"] != object["spec"] {
                return .deny("the spec of a \(kind) cannot be changed once it is created; create a new \(kind)")
            }
            if !byController, old.labels[CairnLabel.policy] != object.labels[CairnLabel.policy] {
                return .deny("the label \(CairnLabel.policy) is set by Cairn's controller only")
            }
            return .allow(patch: [])
        default:
            return .allow(patch: [])
        }
    }

    /// Blueprints and Policies: whoever writes the spec is its author, whose rights it runs with.
    func decideAuthored(_ request: JSONValue, kind: String, object: KubeObject, user: UserInfo) -> Decision {
        switch request["operation"]?.string {
        case "CREATE":
            return .allow(patch: Self.stamp(user, on: object))
        case "UPDATE":
            guard let old = request["oldObject"].map(KubeObject.init) else {
                return .deny("the admission review of an update carries no old object")
            }
            if old["spec"] != object["spec"] {
                return .allow(patch: Self.stamp(user, on: object))   // whoever changes what runs is its author
            }
            if old.annotations[Self.requesterAnnotation] != object.annotations[Self.requesterAnnotation] {
                return .deny("the annotation \(Self.requesterAnnotation) records who wrote this \(kind) and cannot be changed")
            }
            return .allow(patch: [])
        default:
            return .allow(patch: [])
        }
    }

    /// `<policy>-yyyyMMdd-HHmmss`, the names `PolicyReconciler` gives scheduled runs.
    static func isPolicyRunName(_ name: String) -> Bool {
        let parts = name.split(separator: "-")
        guard parts.count >= 3 else { return false }
        let date = parts[parts.count - 2], time = parts[parts.count - 1]
        return date.count == 8 && time.count == 6 && date.allSatisfy(\.isASCIIDigit) && time.allSatisfy(\.isASCIIDigit)
    }

    /// The JSON patch that records `user` as the requester, replacing anything the object claimed.
    static func stamp(_ user: UserInfo, on object: KubeObject) -> [JSONValue] {
        let value = JSONValue.string(String(decoding: user.json.serialized(), as: UTF8.self))
        if object["metadata", "annotations"]?.object == nil {
            return [["op": "add", "path": "/metadata/annotations", "value": [requesterAnnotation: value]]]
        }
        let path = "/metadata/annotations/" + requesterAnnotation.replacingOccurrences(of: "~", with: "~0")
            .replacingOccurrences(of: "/", with: "~1")
        return [["op": "add", "path": .string(path), "value": value]]
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension UserInfo {
    /// The requester an action's annotation records, if any.
    static func requester(of action: KubeObject) -> UserInfo? {
        guard let text = action.annotations[ActionAdmission.requesterAnnotation],
              let json = try? JSONValue(parsing: Array(text.utf8)) else { return nil }
        return UserInfo(json: json)
    }
}
