public struct StorageClass: TypedObject {
    public static let resource = APIResource(group: "storage.k8s.io", version: "v1", name: "storageclasses",
                                             kind: "StorageClass", namespaced: false, shortNames: ["sc"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var provisioner: String? { object["provisioner"]?.string }
    public var reclaimPolicy: String? { object["reclaimPolicy"]?.string }
    /// `Immediate` or `WaitForFirstConsumer`.
    public var volumeBindingMode: String? { object["volumeBindingMode"]?.string }
    public var isDefault: Bool {
        object.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    }
}
