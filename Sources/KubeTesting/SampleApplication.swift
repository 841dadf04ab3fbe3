/// The application the Protection tests capture and restore: a service account with a Role and binding,
/// a ConfigMap, a Secret and a Deployment (labelled `app: web`), and a CRD for `Gadget` custom resources.
public enum SampleApplication {
    public static func crd(group: String) -> String {
        """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: gadgets.\(group)}
        spec:
          group: \(group)
          scope: Namespaced
          names: {plural: gadgets, singular: gadget, kind: Gadget}
          versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]
        """
    }

    public static func objects(namespace ns: String) -> String {
        """
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: app, namespace: \(ns)}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: reader, namespace: \(ns)}
        rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: reader, namespace: \(ns)}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
        subjects: [{kind: ServiceAccount, name: app, namespace: \(ns)}]
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, namespace: \(ns), labels: {app: web}}
        data: {mode: fast}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: db, namespace: \(ns)}
        stringData: {password: s3cret}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: \(ns), labels: {app: web}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              terminationGracePeriodSeconds: 1
              serviceAccountName: app
              containers: [{name: main, image: cairn.local/busybox:1.35, imagePullPolicy: Never, command: [sleep, "3600"]}]
        """
    }
}
