@testable import Protection
import Testing

@Suite("A restore's outcomes: every one counted, a bounded number kept")
struct RestoreOutcomeTests {
    typealias Outcome = ObjectRestorer.Outcome

    func outcome(_ i: Int, _ result: Outcome.Result, essential: Bool = false) -> Outcome {
        Outcome(object: "ConfigMap ns/c\(i)", tier: 3, result: result, transforms: [], essential: essential)
    }

    @Test("a hundred thousand objects: counts of each result, failures and claims or workloads kept, the rest up to the limit")
    func bounded() {
        var first = ObjectRestorer.Outcomes(keep: 100)
        for i in 0..<60_000 { first.append(outcome(i, .created)) }
        for i in 0..<250 { first.append(outcome(i, .failed("no"))) }
        for i in 0..<20 { first.append(outcome(i, .created, essential: true)) }
        var second = ObjectRestorer.Outcomes(keep: 100)
        for i in 0..<39_700 { second.append(outcome(i, .skipped)) }
        for i in 0..<30 { second.append(outcome(i, .forbidden("not yours"))) }
        #expect(first.counts == ["created": 60_020, "failed": 250])
        #expect(first.count == 100 + 100 + 20)
        #expect(first.omitted == 59_900 + 150)

        first.append(contentsOf: second)
        #expect(first.counts == ["created": 60_020, "failed": 250, "skipped": 39_700, "forbidden": 30])
        #expect(first.counts.values.reduce(0, +) == first.count + first.omitted, "every outcome kept or counted as omitted")
        #expect(first.failures == 280)
        #expect(first.filter { $0.essential }.count == 20, "every essential outcome is kept")
        #expect(first.count == 220, "the limit holds across a merge: no more than 100 failures and 100 others besides")
    }

    @Test("results name themselves and say why")
    func names() {
        #expect(Outcome.Result.skipped.name == "skipped" && Outcome.Result.skipped.detail == "already exists")
        #expect(Outcome.Result.forbidden("cluster-scoped").detail == "cluster-scoped")
        #expect(Outcome.Result.created.detail == nil)
    }
}
