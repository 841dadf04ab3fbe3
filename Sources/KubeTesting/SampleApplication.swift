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

    /// A bare pod `writer` of the database clients' image that runs `script` (sh) once and fails at its first
    /// error — the tests' writer that must never see a write fail while a backup runs. `env`: a YAML flow list.
    public static func writer(namespace ns: String, script: String, env: String = "[]") -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: writer, namespace: \(ns)}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: client
            image: cairn.local/dbclients:1
            imagePullPolicy: Never
            env: \(env)
            command: [sh, -c, '\(script)']
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

    /// PostgreSQL 15 as a StatefulSet `db` (one replica, claim template `data` on `storageClass`, the
    /// password from Secret `db` key `password`) behind the ClusterIP Service `db`. On `cairn-hostpath` the
    /// claim `data-db-0` needs a volume made for it; `csi-hostpath` provisions one.
    public static func database(namespace ns: String, storageClass: String = "cairn-hostpath") -> String {
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
                  timeoutSeconds: 10
                  failureThreshold: 6
                volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
          volumeClaimTemplates:
          - metadata: {name: data}
            spec:
              accessModes: [ReadWriteOnce]
              storageClassName: \(storageClass)
              resources: {requests: {storage: 1Gi}}
        """
    }

    /// PostgreSQL 15 with streaming replication: StatefulSet `pg` of `replicas` pods (claim template `data` on
    /// `cairn-hostpath`; the claims `data-pg-N` need volumes made for them), password `pw`. Pod 0 initialises
    /// the primary (replication allowed by password); every other pod, on an empty volume, copies it with
    /// `pg_basebackup -R` and runs as its hot standby (`hot_standby_feedback = on`). The Service `pg-primary`
    /// reaches pod 0.
    public static func replicatedDatabase(namespace ns: String, replicas: Int = 2, blueprint: String? = nil) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata: {name: pg-primary, namespace: \(ns)}
        spec:
          selector: {app: pg, statefulset.kubernetes.io/pod-name: pg-0}
          ports: [{port: 5432, targetPort: 5432}]
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: pg, namespace: \(ns)\(blueprint.map { ", annotations: {cairn.dev/blueprint: \($0)}" } ?? "")}
        spec:
          serviceName: pg
          replicas: \(replicas)
          selector: {matchLabels: {app: pg}}
          template:
            metadata: {labels: {app: pg}}
            spec:
              terminationGracePeriodSeconds: 5
              containers:
              - name: postgres
                image: cairn.local/postgres:15
                imagePullPolicy: Never
                env:
                - {name: POSTGRES_PASSWORD, value: pw}
                - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}
                command:
                - sh
                - -c
                - |
                  set -e
                  BIN=/usr/lib/postgresql/15/bin
                  mkdir -p "$PGDATA" /run/postgresql
                  chown -R postgres:postgres "$PGDATA" /run/postgresql
                  chmod 700 "$PGDATA"
                  if [ ! -s "$PGDATA/PG_VERSION" ]; then
                    if [ "${HOSTNAME##*-}" = 0 ]; then
                      printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
                      chown postgres /tmp/pwfile
                      runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" --username=postgres --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 > /dev/null
                      rm -f /tmp/pwfile
                      echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
                      echo "host replication all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
                      echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
                    else
                      until runuser -u postgres -- env PGPASSWORD="$POSTGRES_PASSWORD" "$BIN/pg_basebackup" -h "$PG_PRIMARY_SERVICE_HOST" -U postgres -D "$PGDATA" -R -X stream; do
                        rm -rf "$PGDATA"/*
                        sleep 2
                      done
                    fi
                  fi
                  exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA" -c hot_standby_feedback=on
                ports: [{containerPort: 5432}]
                readinessProbe:
                  exec: {command: [pg_isready, -U, postgres, -h, 127.0.0.1]}
                  periodSeconds: 2
                  timeoutSeconds: 10
                  failureThreshold: 6
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
