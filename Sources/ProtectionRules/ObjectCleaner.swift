import KubeModel

/// Removes from a captured object what must not be replayed into a cluster: identity and bookkeeping the
/// server assigns (uid, resourceVersion, generation, timestamps, managedFields, status), addresses it
/// allocates (ClusterIPs, node ports), placement (nodeName), bindings that must be made again (a
/// claim's volumeName and bind annotations, a volume's claimRef), and owner references to objects that
/// are recreated with new uids. The result is what `kubectl create` would accept.
public struct ObjectCleaner: Sendable {
    /// Keep Services' node ports (they may collide with ports in use in the target cluster).
    public var preserveNodePorts: Bool

    public init(preserveNodePorts: Bool = false) {
        self.preserveNodePorts = preserveNodePorts
    }

    static let bindAnnotations = [
        "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
        "volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
        "volume.kubernetes.io/selected-node", "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
    ]

    public func clean(_ original: KubeObject) -> KubeObject {
        var object = original
        for field in ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences"] {
            object["metadata", field] = nil
        }
        var annotations = object.annotations
        for key in Self.bindAnnotations { annotations[key] = nil }
        object.annotations = annotations
        object["status"] = nil
        switch (object.group, object.kind) {
        case ("", "Service"):
            if object["spec", "clusterIP"]?.string != "None" {
                object["spec", "clusterIP"] = nil
                object["spec", "clusterIPs"] = nil
            }
            object["spec", "healthCheckNodePort"] = nil
            if !preserveNodePorts, var ports = object["spec", "ports"]?.array {
                for i in ports.indices { ports[i]["nodePort"] = nil }
                object["spec", "ports"] = .array(ports)
            }
        case ("", "Pod"):
            object["spec", "nodeName"] = nil
        case ("", "ServiceAccount"):
            // Token secrets are minted per cluster; the new ones are added by the token controller.
            if let secrets = object["secrets"]?.array {
                let kept = secrets.filter { !($0["name"]?.string ?? "").hasPrefix(object.name + "-token-") }
                object["secrets"] = kept.isEmpty ? nil : .array(kept)
            }
        case ("", "Namespace"):
            object["spec", "finalizers"] = nil
        case ("", "PersistentVolumeClaim"):
            object["spec", "volumeName"] = nil
            // Its data comes from the restore point: what it was first made from may be long gone.
            object["spec", "dataSource"] = nil
            object["spec", "dataSourceRef"] = nil
        case ("", "PersistentVolume"):
            object["spec", "claimRef", "uid"] = nil
            object["spec", "claimRef", "resourceVersion"] = nil
        case ("batch", "Job"):
            // The selector and the template's labels carry the old uid; the server makes new ones.
            if object["spec", "manualSelector"]?.bool != true {
                object["spec", "selector"] = nil
                var labels = KubeObject(object["spec", "template"] ?? .emptyObject).labels
                labels["controller-uid"] = nil
                labels["batch.kubernetes.io/controller-uid"] = nil
                object["spec", "template", "metadata", "labels"] = labels.isEmpty ? nil : .object(labels.mapValues(JSONValue.string))
            }
        default:
            break
        }
        if object["metadata"]?.object?.isEmpty == true { object["metadata"] = nil }
        return object
    }
}
