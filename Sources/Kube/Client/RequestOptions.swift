/// Options of a list or watch.
public struct ListOptions: Sendable {
    /// e.g. `app=db,tier!=cache`.
    public var labelSelector: String?
    /// e.g. `metadata.name=db-0`, `status.phase=Running`.
    public var fieldSelector: String?
    /// Page size; the server returns a `continue` token when more remain.
    public var limit: Int?
    public var continueToken: String?
    public var resourceVersion: String?
    public var resourceVersionMatch: String?
    /// Server-side duration limit (watches).
    public var timeoutSeconds: Int?

    public init(labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil,
                continueToken: String? = nil, resourceVersion: String? = nil, resourceVersionMatch: String? = nil,
                timeoutSeconds: Int? = nil) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continueToken = continueToken
        self.resourceVersion = resourceVersion
        self.resourceVersionMatch = resourceVersionMatch
        self.timeoutSeconds = timeoutSeconds
    }

    var query: [(String, String)] {
        var q: [(String, String)] = []
        if let labelSelector, !labelSelector.isEmpty { q.append(("labelSelector", labelSelector)) }
        if let fieldSelector, !fieldSelector.isEmpty { q.append(("fieldSelector", fieldSelector)) }
        if let limit { q.append(("limit", String(limit))) }
        if let continueToken { q.append(("continue", continueToken)) }
        if let resourceVersion { q.append(("resourceVersion", resourceVersion)) }
        if let resourceVersionMatch { q.append(("resourceVersionMatch", resourceVersionMatch)) }
        if let timeoutSeconds { q.append(("timeoutSeconds", String(timeoutSeconds))) }
        return q
    }
}

/// Options of create, update and patch.
public struct WriteOptions: Sendable {
    /// Validate and admit on the server without persisting (`dryRun=All`).
    public var dryRun: Bool
    /// Who is writing, recorded in `managedFields`.
    public var fieldManager: String?

    public init(dryRun: Bool = false, fieldManager: String? = "cairn") {
        self.dryRun = dryRun
        self.fieldManager = fieldManager
    }

    var query: [(String, String)] {
        var q: [(String, String)] = []
        if dryRun { q.append(("dryRun", "All")) }
        if let fieldManager { q.append(("fieldManager", fieldManager)) }
        return q
    }
}

/// What happens to an object's dependents when it is deleted.
public enum PropagationPolicy: String, Sendable {
    case foreground = "Foreground"
    case background = "Background"
    case orphan = "Orphan"
}

public struct DeleteOptions: Sendable {
    public var propagationPolicy: PropagationPolicy?
    public var gracePeriodSeconds: Int?
    /// Delete only if the object still has this uid / resourceVersion (else Conflict).
    public var preconditionUID: String?
    public var preconditionResourceVersion: String?
    public var dryRun: Bool

    public init(propagationPolicy: PropagationPolicy? = nil, gracePeriodSeconds: Int? = nil,
                preconditionUID: String? = nil, preconditionResourceVersion: String? = nil, dryRun: Bool = false) {
        self.propagationPolicy = propagationPolicy
        self.gracePeriodSeconds = gracePeriodSeconds
        self.preconditionUID = preconditionUID
        self.preconditionResourceVersion = preconditionResourceVersion
        self.dryRun = dryRun
    }

    var body: JSONValue {
        var o: JSONValue = ["apiVersion": "v1", "kind": "DeleteOptions"]
        if let propagationPolicy { o["propagationPolicy"] = .string(propagationPolicy.rawValue) }
        if let gracePeriodSeconds { o["gracePeriodSeconds"] = .int(Int64(gracePeriodSeconds)) }
        if let preconditionUID { o["preconditions", "uid"] = .string(preconditionUID) }
        if let preconditionResourceVersion { o["preconditions", "resourceVersion"] = .string(preconditionResourceVersion) }
        if dryRun { o["dryRun"] = ["All"] }
        return o
    }
}

/// A change to an existing object.
public enum Patch: Sendable {
    /// RFC 7386 JSON merge patch: objects merge, lists are replaced, `null` deletes.
    case merge(JSONValue)
    /// RFC 6902 JSON patch: a list of operations (`add`, `remove`, `replace`, `test`, …).
    case json([JSONValue])
    /// Kubernetes' strategic merge patch (built-in kinds only): lists merge by their key, e.g. containers by name.
    case strategicMerge(JSONValue)
    /// Server-side apply of a full intent; fields owned by another manager conflict unless `force`.
    case apply(JSONValue, fieldManager: String, force: Bool = false)

    var contentType: String {
        switch self {
        case .merge: return "application/merge-patch+json"
        case .json: return "application/json-patch+json"
        case .strategicMerge: return "application/strategic-merge-patch+json"
        case .apply: return "application/apply-patch+yaml"
        }
    }

    var body: JSONValue {
        switch self {
        case .merge(let v), .strategicMerge(let v), .apply(let v, _, _): return v
        case .json(let ops): return .array(ops)
        }
    }

    var name: String {
        switch self {
        case .merge: return "merge-patch"
        case .json: return "json-patch"
        case .strategicMerge: return "strategic-merge-patch"
        case .apply: return "apply"
        }
    }
}
