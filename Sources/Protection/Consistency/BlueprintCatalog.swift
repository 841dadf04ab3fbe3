import Foundation
import Kube

/// The blueprints an application's workloads may name: the Blueprint resources of its namespace over the
/// cluster-wide ones administrators keep in Cairn's namespace, plus any given as files. Those that do not
/// check are kept apart with why, so a workload naming one fails with the reason.
public struct BlueprintCatalog: Sendable {
    public static let resource = APIResource(group: "cairn.dev", version: "v1alpha1", name: "blueprints", kind: "Blueprint",
                                             namespaced: true, subresources: ["status"])

    public var valid: [String: Blueprint] = [:]
    public var invalid: [String: String] = [:]
    /// The resources of the application's namespace's own blueprints, by name (their annotations record
    /// who wrote them); cluster-wide ones and files are not here.
    public var namespaced: [String: KubeObject] = [:]

    public init() {}

    /// Reads the cluster-wide blueprints (with `systemReader`, from `systemNamespace`), then the
    /// application's (with `reader`, from `namespace`), the latter winning. A namespace where the reader
    /// may not list Blueprints, or a cluster without the CRD, contributes none.
    public static func load(namespace: String, reader: KubeClient, systemNamespace: String, systemReader: KubeClient) async throws -> Self {
        var catalog = Self()
        for (index, (client, ns)) in [(systemReader, systemNamespace), (reader, namespace)].enumerated() {
            for object in try await list(in: ns, reader: client) {
                catalog.add(object.json, origin: "Blueprint \(ns)/\(object.name)", name: object.name)
                if index == 1 { catalog.namespaced[object.name] = object }
            }
        }
        return catalog
    }

    /// The Blueprint resources of one namespace, by name; none where `reader` may not list them or the
    /// cluster has no Blueprint CRD.
    public static func list(in namespace: String, reader: KubeClient) async throws -> [KubeObject] {
        do {
            return try await reader.listAll(resource, namespace: namespace).items.sorted { $0.name < $1.name }
        } catch let error as KubeError where error.code == .forbidden || error.code == .notFound {
            return []
        }
    }

    /// Adds one blueprint document (replacing one of the same name).
    public mutating func add(_ document: JSONValue, origin: String, name: String? = nil) {
        do {
            let blueprint = try Blueprint(json: document, name: name)
            valid[blueprint.name] = blueprint
            invalid[blueprint.name] = nil
            namespaced[blueprint.name] = nil
        } catch {
            guard let key = name ?? document["metadata", "name"]?.string else { return }
            invalid[key] = "\(origin): \(error.description)"
            valid[key] = nil
            namespaced[key] = nil
        }
    }
}
