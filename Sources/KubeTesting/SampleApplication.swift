/// Manifests the application tests share. The application the Protection tests capture and restore: a service account with a Role and binding,
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

    /// The Deployment `web` (labelled `app: web`): one busybox pod, container `main`, sleeping; `env` (YAML
    /// flow list) for its container, `serviceAccount` for its pod.
    public static func web(namespace ns: String, serviceAccount: String? = nil, env: String? = nil) -> String {
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: \(ns), labels: {app: web}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              terminationGracePeriodSeconds: 1\(serviceAccount.map { "\n      serviceAccountName: \($0)" } ?? "")
              containers: [{name: main, image: cairn.local/busybox:1.35, imagePullPolicy: Never, command: [sleep, "3600"]\(env.map { ", env: \($0)" } ?? "")}]
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
        """ + "\n" + web(namespace: ns, serviceAccount: "app")
    }

    /// PostgreSQL 15 as a StatefulSet `db` (one replica, claim template `data` on `cairn-hostpath`, the
    /// password from Secret `db` key `password`) behind the ClusterIP Service `db`. The claim `data-db-0`
    /// needs a volume made for it.
    public static func database(namespace ns: String) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata: {name: db, namespace: \(ns)}
        spec:
          selector: {app: db}
          ports: [{port: 5432, targetPort: 5432}]
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db, namespace: \(ns)}
        spec:
          serviceName: db
          replicas: 1
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec:
              terminationGracePeriodSeconds: 5
              containers:
              - name: postgres
                image: cairn.local/postgres:15
                imagePullPolicy: Never
                env:
                - {name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
                - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}
                ports: [{containerPort: 5432}]
                readinessProbe:
                  exec: {command: [pg_isready, -U, postgres, -h, 127.0.0.1]}
                  periodSeconds: 2
                volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
          volumeClaimTemplates:
          - metadata: {name: data}
            spec:
              accessModes: [ReadWriteOnce]
              storageClassName: cairn-hostpath
              resources: {requests: {storage: 1Gi}}
        """
    }
}
