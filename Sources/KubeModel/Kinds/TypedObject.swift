/// A typed view of one kind of object. The view reads and writes through `object`, so fields it does not
/// model are kept when the object is written back.
public protocol TypedObject: Sendable, CustomStringConvertible {
    /// The resource type of this kind (built-in kinds are known without discovery).
    static var resource: APIResource { get }
    var object: KubeObject { get set }
    init(_ object: KubeObject)
}

extension TypedObject {
    /// A new, empty object of this kind.
    public init(name: String, namespace: String? = nil) {
        self.init(KubeObject(apiVersion: Self.resource.apiVersion, kind: Self.resource.kind, name: name,
                             namespace: Self.resource.namespaced ? namespace : nil))
    }

    public var name: String {
        get { object.name }
        set { object.name = newValue }
    }

    public var namespace: String? {
        get { object.namespace }
        set { object.namespace = newValue }
    }

    public var labels: [String: String] {
        get { object.labels }
        set { object.labels = newValue }
    }

    public var annotations: [String: String] {
        get { object.annotations }
        set { object.annotations = newValue }
    }

    public var resourceVersion: String? { object.resourceVersion }
    public var uid: String? { object.uid }
    public var description: String { object.description }
}

extension JSONValue {
    package static func strings(_ map: [String: String]) -> JSONValue { .object(map.mapValues(JSONValue.string)) }
}
