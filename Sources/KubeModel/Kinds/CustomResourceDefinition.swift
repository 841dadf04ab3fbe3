public struct CustomResourceDefinition: TypedObject {
    public static let resource = APIResource(group: "apiextensions.k8s.io", version: "v1",
                                             name: "customresourcedefinitions", kind: "CustomResourceDefinition",
                                             namespaced: false, shortNames: ["crd", "crds"], subresources: ["status"])
    public var object: KubeObject
    public init(_ object: KubeObject) { self.object = object }

    public var group: String? { object["spec", "group"]?.string }
    public var kind: String? { object["spec", "names", "kind"]?.string }
    public var plural: String? { object["spec", "names", "plural"]?.string }
    /// `Namespaced` or `Cluster`.
    public var scope: String? { object["spec", "scope"]?.string }
    public var versions: [String] {
        (object["spec", "versions"]?.array ?? []).compactMap { $0["name"]?.string }
    }
    /// The version objects are stored in.
    public var storageVersion: String? {
        (object["spec", "versions"]?.array ?? []).first { $0["storage"]?.bool == true }?["name"]?.string
    }
    /// True once the API server serves the new type.
    public var isEstablished: Bool {
        (object["status", "conditions"]?.array ?? []).contains {
            $0["type"]?.string == "Established" && $0["status"]?.string == "True"
        }
    }
}
