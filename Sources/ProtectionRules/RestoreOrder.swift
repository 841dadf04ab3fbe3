import KubeModel

/// The order objects are restored in: everything an object needs exists before it. Objects of one tier
/// do not depend on each other and are created in parallel.
///
/// 0 CRDs (then wait until Established) · 1 Namespaces · 2 ServiceAccounts, Roles, ClusterRoles ·
/// 3 RoleBindings, ClusterRoleBindings · 4 ConfigMaps, Secrets, LimitRanges, ResourceQuotas ·
/// 5 StorageClasses, PersistentVolumes · 6 PersistentVolumeClaims (data written back here, before any
/// workload starts) · 7 Services · 8 workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
/// CronJobs, Pods) · 9 everything else: Ingresses, NetworkPolicies, PodDisruptionBudgets, autoscalers,
/// custom resources (which often drive operators that expect the rest to exist).
public enum RestoreOrder {
    public static let tierNames = ["CRDs", "namespaces", "service accounts and roles", "role bindings",
                                   "configuration", "storage classes and volumes", "claims", "services",
                                   "workloads", "everything else"]

    /// The tier of PersistentVolumeClaims: volume data is written once it is done.
    public static let claimsTier = 6

    public static func tier(of object: KubeObject) -> Int {
        tier(group: object.group, kind: object.kind)
    }

    public static func tier(group: String, kind: String) -> Int {
        switch (group, kind) {
        case ("apiextensions.k8s.io", "CustomResourceDefinition"): return 0
        case ("", "Namespace"): return 1
        case ("", "ServiceAccount"), ("rbac.authorization.k8s.io", "Role"),
             ("rbac.authorization.k8s.io", "ClusterRole"): return 2
        case ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"): return 3
        case ("", "ConfigMap"), ("", "Secret"), ("", "LimitRange"), ("", "ResourceQuota"): return 4
        case ("storage.k8s.io", "StorageClass"), ("", "PersistentVolume"): return 5
        case ("", "PersistentVolumeClaim"): return 6
        case ("", "Service"): return 7
        case ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
             ("batch", "Job"), ("batch", "CronJob"), ("", "Pod"), ("", "ReplicationController"): return 8
        default: return 9
        }
    }

    /// Objects grouped by tier, in order; empty tiers left out. Within a tier: by kind, namespace, name,
    /// so a plan prints the same way every time.
    public static func tiers(_ objects: [KubeObject]) -> [(tier: Int, objects: [KubeObject])] {
        let grouped = Dictionary(grouping: objects, by: tier(of:))
        return grouped.keys.sorted().map { tier in
            (tier, grouped[tier]!.sorted { ($0.kind, $0.namespace ?? "", $0.name) < ($1.kind, $1.namespace ?? "", $1.name) })
        }
    }
}
