import Foundation

/// The templates of blueprint phases: `{{ name }}` is replaced by a value, nothing else is evaluated (no
/// code, no shell). Names: `namespace`, `time` (the action's start, RFC 3339 UTC), `workload.kind`,
/// `workload.name`, `workload.replicas` (its replica count when the action started), `workload.image` (its
/// first container's image), `workload.claim` (the first claim of its first pod: `data-db-0`),
/// `workload.pods` (its running pods' names, sorted, separated by spaces — empty before it exists), and
/// `phases.NAME.output` (an earlier text phase's stdout, trimmed). A value is spliced into the one
/// argument that holds it: a command given as a list is never re-split.
public enum BlueprintTemplate {
    static let fixed: Set<String> = ["namespace", "time", "workload.kind", "workload.name", "workload.replicas", "workload.image",
                                     "workload.claim", "workload.pods"]

    /// Checks every `{{ … }}` of `text` names a known value; `phases` are the phases that ran before.
    public static func check(_ text: String, phases: [String]) throws(ProtectionError) {
        for name in try names(in: text) {
            if fixed.contains(name) { continue }
            let parts = name.split(separator: ".").map(String.init)
            if parts.count == 3, parts[0] == "phases", parts[2] == "output" {
                guard phases.contains(parts[1]) else {
                    throw ProtectionError(.invalidBlueprint, "{{ \(name) }} refers to phase \(parts[1]), which does not run before this one in the same action")
                }
                continue
            }
            throw ProtectionError(.invalidBlueprint, "unknown template value {{ \(name) }} (known: namespace, time, workload.kind, workload.name, workload.replicas, workload.image, workload.claim, workload.pods, phases.NAME.output)")
        }
    }

    /// `text` with every `{{ name }}` replaced by `values[name]`.
    public static func render(_ text: String, _ values: [String: String]) throws(ProtectionError) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ProtectionError(.invalidBlueprint, "'{{' without '}}' in \(text)")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let value = values[name] else {
                throw ProtectionError(.invalidBlueprint, "no value for {{ \(name) }}")
            }
            out += value
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    static func names(in text: String) throws(ProtectionError) -> [String] {
        var found: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ProtectionError(.invalidBlueprint, "'{{' without '}}' in '\(text)'")
            }
            found.append(rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces))
            rest = rest[close.upperBound...]
        }
        return found
    }
}
