public struct Namespace: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "namespaces", kind: "Namespace",
                                             namespaced: false, shortNames: ["ns"], subresources: ["status", "finalize"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    /// `Active` or `Terminating`.
    public var phase: String? { object["status", "phase"]?.string }
}

public struct ConfigMap: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "configmaps", kind: "ConfigMap",
                                             namespaced: true, shortNames: ["cm"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var data: [String: String] {
        get { KubeObject.stringMap(object["data"]) }
        set { object["data"] = newValue.isEmpty ? nil : .strings(newValue) }
    }
}

public struct Secret: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "secrets", kind: "Secret", namespaced: true)
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    /// e.g. `Opaque`, `kubernetes.io/service-account-token`.
    public var type: String? {
        get { object["type"]?.string }
        set { object["type"] = newValue.map(JSONValue.string) }
    }

    /// The decoded values (the API carries them base64-encoded).
    public var data: [String: [UInt8]] {
        get {
            var result: [String: [UInt8]] = [:]
            for (key, value) in KubeObject.stringMap(object["data"]) {
                if let bytes = Base64.decode(value) { result[key] = bytes }
            }
            return result
        }
        set {
            object["data"] = newValue.isEmpty ? nil : .object(newValue.mapValues { .string(Base64.encode($0)) })
        }
    }
}

public struct Pod: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "pods", kind: "Pod", namespaced: true,
                                             shortNames: ["po"], subresources: ["status", "log", "exec", "attach",
                                                                                "portforward", "eviction", "binding"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    public var phase: String? { object["status", "phase"]?.string }
    public var nodeName: String? { object["spec", "nodeName"]?.string }
    public var podIP: String? { object["status", "podIP"]?.string }
    public var containerNames: [String] {
        (object["spec", "containers"]?.array ?? []).compactMap { $0["name"]?.string }
    }
    /// The claims the pod mounts.
    public var claimNames: [String] {
        (object["spec", "volumes"]?.array ?? []).compactMap { $0["persistentVolumeClaim", "claimName"]?.string }
    }
    /// True when the pod's `Ready` condition is `True`.
    public var isReady: Bool {
        (object["status", "conditions"]?.array ?? []).contains {
            $0["type"]?.string == "Ready" && $0["status"]?.string == "True"
        }
    }
}

public struct PersistentVolumeClaim: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "persistentvolumeclaims",
                                             kind: "PersistentVolumeClaim", namespaced: true, shortNames: ["pvc"],
                                             subresources: ["status"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var storageClassName: String? {
        get { object["spec", "storageClassName"]?.string }
        set { object["spec", "storageClassName"] = newValue.map(JSONValue.string) }
    }
    /// The bound PersistentVolume.
    public var volumeName: String? {
        get { object["spec", "volumeName"]?.string }
        set { object["spec", "volumeName"] = newValue.map(JSONValue.string) }
    }
    public var accessModes: [String] {
        get { object["spec", "accessModes"]?.array?.compactMap(\.string) ?? [] }
        set { object["spec", "accessModes"] = .array(newValue.map(JSONValue.string)) }
    }
    /// The requested size, e.g. `1Gi`.
    public var requestedStorage: String? {
        get { object["spec", "resources", "requests", "storage"]?.string }
        set { object["spec", "resources", "requests", "storage"] = newValue.map(JSONValue.string) }
    }
    /// `Pending`, `Bound`, `Lost`.
    public var phase: String? { object["status", "phase"]?.string }
}

public struct PersistentVolume: TypedObject {
    public static let resource = APIResource(group: "", version: "v1", name: "persistentvolumes",
                                             kind: "PersistentVolume", namespaced: false, shortNames: ["pv"],
                                             subresources: ["status"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var storageClassName: String? {
        get { object["spec", "storageClassName"]?.string }
        set { object["spec", "storageClassName"] = newValue.map(JSONValue.string) }
    }
    public var capacity: String? { object["spec", "capacity", "storage"]?.string }
    /// `namespace/name` of the claim it is bound to.
    public var claim: (namespace: String, name: String)? {
        guard let ns = object["spec", "claimRef", "namespace"]?.string,
              let name = object["spec", "claimRef", "name"]?.string else { return nil }
        return (ns, name)
    }
    /// The host directory of a hostPath or local volume.
    public var hostPath: String? {
        object["spec", "hostPath", "path"]?.string ?? object["spec", "local", "path"]?.string
    }
    /// The CSI driver, when the volume is provisioned by one.
    public var csiDriver: String? { object["spec", "csi", "driver"]?.string }
    public var reclaimPolicy: String? {
        get { object["spec", "persistentVolumeReclaimPolicy"]?.string }
        set { object["spec", "persistentVolumeReclaimPolicy"] = newValue.map(JSONValue.string) }
    }
    /// `Available`, `Bound`, `Released`, `Failed`.
    public var phase: String? { object["status", "phase"]?.string }
}

/// Base64 of Secret data.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    static func decode(_ text: String) -> [UInt8]? {
        Data(base64Encoded: text).map(Array.init)
    }
}

import Foundation
