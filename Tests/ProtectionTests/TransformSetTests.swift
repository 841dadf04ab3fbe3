import KubeModel
import ProtectionRules
import Testing

@Suite("Restore transforms")
struct TransformSetTests {
    let file = """
        transforms:
          - name: one replica for the front
            match: {group: apps, kind: Deployment, labels: {tier: front}}
            patch:
              - {op: replace, path: /spec/replicas, value: 1}
              - {op: add, path: /metadata/labels/restored, value: "yes"}
          - match: {kind: Service, name: web}
            patch: [{op: replace, path: /spec/type, value: ClusterIP}]
        storageClasses: {fast-ssd: standard}
        imageRegistry: {from: docker.io, to: registry.internal:5000}
        replicas: {StatefulSet/db: 0}
        """

    @Test("matchers select, patches apply in order, shortcuts rewrite classes, images and replicas")
    func applies() throws {
        let set = try TransformSet(yaml: file)
        let deployment = try object(#"""
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"tier":"front"}},
             "spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"a","image":"nginx:1.25"},
               {"name":"b","image":"docker.io/bitnami/redis:7"},{"name":"c","image":"quay.io/x/y:1"}],
               "initContainers":[{"name":"i","image":"busybox"}]}}}}
            """#)
        let (d, applied) = try set.apply(to: deployment)
        #expect(d["spec", "replicas"] == 1)
        #expect(d.labels["restored"] == "yes")
        let images = (d["spec", "template", "spec", "containers"]?.array ?? []).compactMap { $0["image"]?.string }
        #expect(images == ["registry.internal:5000/library/nginx:1.25", "registry.internal:5000/bitnami/redis:7", "quay.io/x/y:1"])
        #expect(d["spec", "template", "spec", "initContainers"]?.array?.first?["image"] == "registry.internal:5000/library/busybox")
        #expect(applied == ["image registry docker.io → registry.internal:5000", "one replica for the front"])

        let sts = try object(#"""
            {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},
             "spec":{"replicas":3,"volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"storageClassName":"fast-ssd"}}],
                     "template":{"spec":{"containers":[{"name":"pg","image":"postgres:15"}]}}}}
            """#)
        let (s, sApplied) = try set.apply(to: sts)
        #expect(s["spec", "replicas"] == 0)
        #expect(s["spec", "volumeClaimTemplates"]?.array?.first?["spec", "storageClassName"] == "standard")
        #expect(sApplied.contains("storage-class mapping") && sApplied.contains("replicas 0"))

        let claim = try object(#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c"},"spec":{"storageClassName":"fast-ssd"}}"#)
        #expect(try set.apply(to: claim).object["spec", "storageClassName"] == "standard")
        let other = try object(#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c"},"spec":{"storageClassName":"slow"}}"#)
        #expect(try set.apply(to: other).applied.isEmpty)
        let back = try object(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","labels":{"tier":"back"}},"spec":{"replicas":2}}"#)
        #expect(try set.apply(to: back).object["spec", "replicas"] == 2)
    }

    @Test("a patch that does not fit an object fails that object with a message naming transform and object")
    func failsAlone() throws {
        let set = try TransformSet(yaml: file)
        let service = try object(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},"spec":{}}"#)
        do {
            _ = try set.apply(to: service)
            Issue.record("expected the replace of a missing field to fail")
        } catch {
            #expect(error.description.contains("transform 2 on Service shop/web"), "\(error)")
        }
    }

    @Test("bad transform files are clear errors", arguments: [
        ("transforms: [{match: {kind: X}}]", "'patch' must be a non-empty list"),
        ("transforms: [{patch: [{op: frob, path: /a}]}]", "not a JSON-patch operation"),
        ("imageRegistry: {from: docker.io}", "needs 'from' and 'to'"),
        ("replicas: {web: 1}", "Kind/name"),
        ("replica: 1", "unknown field 'replica'"),
        ("transforms: [", "malformed YAML"),
    ])
    func invalid(_ text: String, _ expected: String) {
        do {
            _ = try TransformSet(yaml: text)
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains(expected), "\(error)")
        }
    }

    @Test("a TransformSet resource carries the same fields under spec")
    func resource() throws {
        let set = try TransformSet(yaml: """
            apiVersion: cairn.dev/v1alpha1
            kind: TransformSet
            metadata: {name: dr}
            spec:
              replicas: 1
            """)
        let d = try object(#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":4}}"#)
        #expect(try set.apply(to: d).object["spec", "replicas"] == 1)
    }
}
