import KubeModel
import ProtectionRules
import Testing

func object(_ json: String) throws -> KubeObject { KubeObject(try JSONValue(parsing: json)) }

@Suite("What a restore point captures, how objects are cleaned, in which order they come back")
struct ProtectionLogicTests {
    @Test("where a restored claim's mover may run: the node selector, node affinity and tolerations of the pods that mount it (StatefulSet templates too), never inter-pod affinity")
    func claimPlacements() throws {
        let deployment = try object(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"right"},"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"n2"},"tolerations":[{"key":"gpu","operator":"Exists"}],"affinity":{"podAntiAffinity":{"x":1}},"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"data-right"}},{"name":"e","emptyDir":{}}]}}}}"#)
        let set = try object(#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},"spec":{"replicas":2,"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}}},"volumeClaimTemplates":[{"metadata":{"name":"pgdata"}}]}}"#)
        let free = try object(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"free"},"spec":{"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"scratch"}}]}}"#)
        let foreign = try object(#"{"apiVersion":"example.com/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"template":{"spec":{"nodeSelector":{"a":"b"},"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"other"}}]}}}}"#)
        // Fields of the wrong shape (a restore point is tenant input) are not copied onto Cairn's pods.
        let garbled = try object(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"odd"},"spec":{"nodeSelector":"n2","tolerations":{"key":"x"},"affinity":{"nodeAffinity":"everywhere"},"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"odd"}}]}}"#)
        let placements = WorkloadPlacement.claimPlacements([set, free, deployment, foreign, garbled])
        #expect(Set(placements.keys) == ["data-right", "pgdata-db-0", "pgdata-db-1"])
        #expect(placements["data-right"]?["nodeSelector", "kubernetes.io/hostname"] == "n2")
        #expect(placements["data-right"]?["tolerations"]?.array?.count == 1)
        #expect(placements["data-right"]?["affinity"] == nil, "inter-pod affinity names pods a restore has not started")
        #expect(placements["pgdata-db-1"]?["affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"] != nil)
        #expect(placements["pgdata-db-1"]?["nodeSelector"] == nil)
    }

    @Test("regenerated and controller-owned objects are left out by rule; filters override, the most specific wins")
    func captureRules() throws {
        let rules = CaptureRules()
        let owned = try object(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d","uid":"u","controller":true}]}}"#)
        let bare = try object(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"debug"}}"#)
        let token = try object(#"{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{"name":"default-token-x"}}"#)
        let secret = try object(#"{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db"}}"#)
        let rootCA = try object(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kube-root-ca.crt"}}"#)
        let event = try object(#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e"}}"#)
        let lease = try object(#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"}}"#)
        let rs = try object(#"{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"web-5d","ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"u","controller":true}]}}"#)
        #expect(rules.decide(owned) == .skip(reason: "recreated by its ReplicaSet web-5d"))
        #expect(rules.decide(rs) == .skip(reason: "recreated by its Deployment web"))
        #expect(rules.decide(bare) == .capture)
        #expect(rules.decide(secret) == .capture)
        for skipped in [token, rootCA, event, lease] {
            guard case .skip = rules.decide(skipped) else {
                Issue.record("\(skipped) should be skipped")
                continue
            }
        }
        let custom = CaptureRules(include: [CaptureRules.Selector("Pod")!, CaptureRules.Selector("Secret/db")!],
                                  exclude: [CaptureRules.Selector("Secret")!, CaptureRules.Selector("Pod/debug")!])
        #expect(custom.decide(owned) == .capture)             // an explicit include beats the rule
        #expect(custom.decide(bare) == .skip(reason: "excluded by a filter"))  // the more specific exclude wins
        #expect(custom.decide(secret) == .capture)            // the more specific include wins
        #expect(custom.decide(token) == .skip(reason: "excluded by a filter"))
        #expect(CaptureRules(exclude: [CaptureRules.Selector("*.coordination.k8s.io")!]).decide(lease) != .capture)
        #expect(CaptureRules.Selector("apps/Deployment/web") == CaptureRules.Selector(group: "apps", kind: "Deployment", name: "web"))
        #expect(CaptureRules.Selector("a//b") == nil)
    }

    @Test("Cairn's configuration (a backup of the controller's namespace): Profiles, Policies, TransformSets, Blueprints — no Secret, no controller, no records")
    func cairnConfiguration() {
        let rules = CaptureRules.cairnConfiguration
        for kind in ["Profile", "Policy", "TransformSet", "Blueprint"] {
            #expect(rules.decide(KubeObject(apiVersion: "cairn.dev/v1alpha1", kind: kind, name: "x")) == .capture, "\(kind)")
        }
        for (apiVersion, kind) in [("v1", "Secret"), ("apps/v1", "Deployment"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"),
                                   ("cairn.dev/v1alpha1", "RestorePoint"), ("cairn.dev/v1alpha1", "ExportAction"),
                                   ("cairn.dev/v1alpha1", "ImportAction"), ("other.dev/v1", "Profile")] {
            #expect(rules.decide(KubeObject(apiVersion: apiVersion, kind: kind, name: "x")) != .capture, "\(kind)")
        }
    }

    @Test("cleaning removes what the server assigns and keeps the intent")
    func cleaning() throws {
        let service = try object(#"""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"db","namespace":"shop","uid":"1","resourceVersion":"9",
             "creationTimestamp":"2026-01-01T00:00:00Z","managedFields":[{}],"labels":{"app":"db"},
             "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"me"},
             "ownerReferences":[{"kind":"X","name":"x","uid":"2"}]},
             "spec":{"type":"NodePort","clusterIP":"10.96.0.7","clusterIPs":["10.96.0.7"],"selector":{"app":"db"},
                     "ports":[{"port":5432,"nodePort":30007}]},"status":{"loadBalancer":{}}}
            """#)
        let clean = ObjectCleaner().clean(service)
        #expect(clean.uid == nil && clean.resourceVersion == nil && clean.creationTimestamp == nil)
        #expect(clean["metadata", "managedFields"] == nil && clean["metadata", "ownerReferences"] == nil)
        #expect(clean["status"] == nil)
        #expect(clean["spec", "clusterIP"] == nil && clean["spec", "clusterIPs"] == nil)
        #expect(clean["spec", "ports"] == [["port": 5432]])
        #expect(clean.labels == ["app": "db"] && clean.annotations == ["keep": "me"])
        #expect(clean.namespace == "shop" && clean["spec", "selector"] == ["app": "db"])
        #expect(ObjectCleaner(preserveNodePorts: true).clean(service)["spec", "ports"] == [["port": 5432, "nodePort": 30007]])

        let headless = try object(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"h"},"spec":{"clusterIP":"None"}}"#)
        #expect(ObjectCleaner().clean(headless)["spec", "clusterIP"] == "None")

        let claim = try object(#"""
            {"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","annotations":{"pv.kubernetes.io/bind-completed":"yes"}},
             "spec":{"volumeName":"pv-1","storageClassName":"fast","resources":{"requests":{"storage":"1Gi"}},
                     "dataSource":{"apiGroup":"snapshot.storage.k8s.io","kind":"VolumeSnapshot","name":"long-gone"}},"status":{"phase":"Bound"}}
            """#)
        let cleanClaim = ObjectCleaner().clean(claim)
        #expect(cleanClaim["spec", "volumeName"] == nil && cleanClaim.annotations.isEmpty)
        #expect(cleanClaim["spec", "dataSource"] == nil, "the data comes from the restore point, not from what the claim was first made from")
        #expect(cleanClaim["spec", "storageClassName"] == "fast")

        let job = try object(#"""
            {"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},
             "spec":{"selector":{"matchLabels":{"controller-uid":"u"}},
                     "template":{"metadata":{"labels":{"controller-uid":"u","job-name":"j","app":"x"}},"spec":{}}}}
            """#)
        let cleanJob = ObjectCleaner().clean(job)
        #expect(cleanJob["spec", "selector"] == nil)
        #expect(cleanJob["spec", "template", "metadata", "labels"] == ["job-name": "j", "app": "x"])

        let pod = try object(#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"nodeName":"n1","containers":[]}}"#)
        #expect(ObjectCleaner().clean(pod)["spec", "nodeName"] == nil)
    }

    @Test("restore order: CRDs, namespaces, identities, bindings, configuration, volumes, claims, services, workloads, the rest")
    func order() throws {
        let kinds: [(String, String)] = [
            ("example.com/v1", "Widget"), ("apps/v1", "StatefulSet"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
            ("v1", "PersistentVolume"), ("v1", "Secret"), ("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "Role"), ("v1", "ServiceAccount"), ("v1", "Namespace"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("networking.k8s.io/v1", "Ingress"),
            ("apps/v1", "Deployment"),
        ]
        let objects = kinds.map { KubeObject(apiVersion: $0.0, kind: $0.1, name: "x") }
        let tiers = RestoreOrder.tiers(objects)
        let order = tiers.flatMap { $0.objects.map(\.kind) }
        #expect(order == ["CustomResourceDefinition", "Namespace", "Role", "ServiceAccount", "RoleBinding", "ConfigMap",
                          "Secret", "PersistentVolume", "PersistentVolumeClaim", "Service", "Deployment", "StatefulSet",
                          "Ingress", "Widget"])
        #expect(tiers.map(\.tier) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(RestoreOrder.tierNames.count == 10)
    }
}
