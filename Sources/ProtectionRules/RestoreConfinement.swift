import KubeModel

/// What a restore that a namespace's own user asked for may write: its namespace's objects, as planned.
///
/// The restore already runs with that user's identity (impersonation), so the API server's RBAC decides;
/// this is the second wall, checked on every object right before it is written, after every transform:
/// - left to administrators (reported `excluded`, decided before transforms): cluster-scoped objects,
///   the Namespace itself (its labels carry Pod Security levels), RBAC objects, Cairn's own kinds;
/// - refused (reported `forbidden`, a failure): an object whose transforms changed its group, kind, name
///   or namespace, that lands outside the target namespace, or a claim made to bind a volume of its
///   choosing. Objects of another namespace inside a restore point are refused for everyone.
public enum RestoreConfinement {
    static let rbacGroup = "rbac.authorization.k8s.io"
    static let cairnGroup = "cairn.dev"

    /// Why a namespace's user's restore leaves `object` to administrators, or nil.
    public static func exclusion(of object: KubeObject) -> String? {
        if object.kind == "Namespace" && object.group.isEmpty {
            return "the Namespace itself (labels, annotations) is restored by administrators only"
        }
        if object.namespace == nil { return "cluster-scoped: restored by administrators only" }
        if object.group == rbacGroup { return "RBAC objects (who may do what) are restored by administrators only" }
        if object.group == cairnGroup { return "Cairn's own objects are never restored by a namespace's users" }
        return nil
    }

    /// Why `transformed` (what transforms made of `planned`) may not be written by a namespace's user's
    /// restore into `target`, or nil when it may.
    public static func refusal(planned: KubeObject, transformed: KubeObject, target: String) -> String? {
        func identity(_ o: KubeObject) -> String {
            "\(o.group.isEmpty ? o.kind : o.kind + "." + o.group) \(o.namespace.map { $0 + "/" } ?? "(cluster-wide) ")\(o.name)"
        }
        if identity(planned) != identity(transformed) {
            return "transforms may not change what an object is or where it goes: \(identity(planned)) became \(identity(transformed))"
        }
        if transformed.namespace != target {
            return "a restore into namespace \(target) writes objects of \(target) only"
        }
        if transformed.generateName != nil && transformed.generateName != planned.generateName {
            return "transforms may not set metadata.generateName"
        }
        if let reason = exclusion(of: transformed) { return reason }
        if transformed.kind == "PersistentVolumeClaim", transformed.group.isEmpty,
           transformed["spec", "volumeName"] != planned["spec", "volumeName"] {
            return "transforms may not choose the volume a claim binds (spec.volumeName): Cairn makes or provisions it"
        }
        return nil
    }

    /// Why an object found in a restore point of `source` is never written: it names another namespace.
    public static func foreign(_ object: KubeObject, source: String) -> String? {
        guard let namespace = object.namespace, namespace != source else { return nil }
        return "the restore point of namespace \(source) holds this object of namespace \(namespace): it is never written"
    }
}
