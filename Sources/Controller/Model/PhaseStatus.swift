import Kube
import Protection

extension PhaseRecord {
    /// Phase records as an action's status shows them (`status.result.phases`): how each ended, never
    /// what it printed beyond the last lines of a failure's stderr.
    static func statusJSON(_ records: [PhaseRecord]) -> JSONValue {
        .array(records.prefix(50).map { record in
            var entry: JSONValue = ["blueprint": .string(record.blueprint), "action": .string(record.action),
                                    "phase": .string(record.phase), "result": .string(record.result),
                                    "seconds": .double(record.seconds)]
            if let workload = record.workload { entry["workload"] = .string(workload) }
            if let pod = record.pod { entry["pod"] = .string(pod) }
            if let code = record.exitCode { entry["exitCode"] = .int(Int64(code)) }
            if let bytes = record.artifactBytes { entry["artifactBytes"] = .int(Int64(bytes)) }
            if let bytes = record.artifactStreamedBytes { entry["artifactStreamedBytes"] = .int(Int64(bytes)) }
            if let message = record.message { entry["message"] = .string(String(message.prefix(2000))) }
            return entry
        })
    }
}
