import KubeModel
import ProtectionRules
import Testing

/// The second wall of a namespace user's restore: what transforms made of each object is checked right
/// before it is written (the first wall is the API server's RBAC, the restore acting as that user).
@Suite("Restore confinement: a namespace's user restores that namespace's objects, as planned")
struct RestoreConfinementTests {
    let configMap = try! object(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"team-a"},"data":{"color":"teal"}}"#)

    func transformed(_ planned: KubeObject, _ patch: String) throws -> KubeObject {
        let set = try TransformSet(yaml: """
            transforms:
            - name: hostile
              patch: \(patch)
            """)
        return try set.apply(to: planned).0
    }

    @Test("transforms that change kind, group, name or namespace, or replace the whole object, are refused")
    func identityChanges() throws {
        let attempts = [
            #"[{op: replace, path: /kind, value: ClusterRoleBinding}, {op: replace, path: /apiVersion, value: rbac.authorization.k8s.io/v1}]"#,
            #"[{op: replace, path: /metadata/namespace, value: team-b}]"#,
            #"[{op: remove, path: /metadata/namespace}]"#,
            #"[{op: replace, path: /metadata/name, value: other}]"#,
            #"[{op: replace, path: /apiVersion, value: cairn.dev/v1alpha1}]"#,
            #"[{op: replace, path: "", value: {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: pwn}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{kind: User, name: alice}]}}]"#,
            #"[{op: move, from: /metadata/namespace, path: /metadata/name}]"#,
            #"[{op: copy, from: /data/color, path: /metadata/namespace}]"#,
            #"[{op: add, path: /metadata/generateName, value: x-}]"#,
        ]
        for patch in attempts {
            let result: KubeObject
            do {
                result = try transformed(configMap, patch)
            } catch {
                continue   // a patch that cannot apply fails the object anyway
            }
            let refusal = RestoreConfinement.refusal(planned: configMap, transformed: result, target: "team-a")
            #expect(refusal != nil, "not refused: \(patch) → \(result)")
        }
        // What a tenant may do: change the content.
        let painted = try transformed(configMap, "[{op: replace, path: /data/color, value: orange}]")
        #expect(RestoreConfinement.refusal(planned: configMap, transformed: painted, target: "team-a") == nil)
        // Into another target than the planned one.
        #expect(RestoreConfinement.refusal(planned: configMap, transformed: configMap, target: "team-b") != nil)
    }

    @Test("a claim may not be made to bind a volume of the tenant's choosing")
    func claimVolume() throws {
        let claim = try object(#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"team-a"},"spec":{"storageClassName":"cairn-hostpath"}}"#)
        let grab = try transformed(claim, "[{op: add, path: /spec/volumeName, value: team-b-data}]")
        #expect(RestoreConfinement.refusal(planned: claim, transformed: grab, target: "team-a")?.contains("volumeName") == true)
        let resized = try transformed(claim, #"[{op: add, path: /spec/resources, value: {requests: {storage: 2Gi}}}]"#)
        #expect(RestoreConfinement.refusal(planned: claim, transformed: resized, target: "team-a") == nil)
    }

    @Test("left to administrators: cluster-scoped objects, the Namespace, RBAC, Cairn's kinds; objects of another namespace are never written")
    func exclusions() throws {
        let excluded = [
            #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}"#,
            #"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv"},"spec":{"hostPath":{"path":"/"}}}"#,
            #"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"b","namespace":"team-a"}}"#,
            #"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"b"}}"#,
            #"{"apiVersion":"cairn.dev/v1alpha1","kind":"RestoreAction","metadata":{"name":"r","namespace":"team-a"}}"#,
        ]
        for text in excluded {
            #expect(RestoreConfinement.exclusion(of: try object(text)) != nil, "\(text)")
        }
        #expect(RestoreConfinement.exclusion(of: configMap) == nil)
        #expect(RestoreConfinement.exclusion(of: try object(#"{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"q","namespace":"team-a"}}"#)) == nil)
        #expect(RestoreConfinement.foreign(configMap, source: "team-a") == nil)
        #expect(RestoreConfinement.foreign(configMap, source: "shop")?.contains("namespace team-a") == true)
        #expect(RestoreConfinement.foreign(try object(#"{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv"}}"#), source: "shop") == nil)
    }
}
