import Foundation
import KubeModel
import ProtectionRules
import Testing

@Suite("Blueprints: reading, checking, templates")
struct BlueprintTests {
    static let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../deploy/blueprints").standardized

    /// Reads a blueprint and, for a mistake, the line it is on.
    func check(_ yaml: String) -> (blueprint: Blueprint?, line: Int?, message: String?) {
        do {
            let (document, lines) = try JSONValue.parseYAMLWithLines(yaml)
            do {
                return (try Blueprint(json: document), nil, nil)
            } catch {
                return (nil, error.field.flatMap { lines.line(of: $0) }, error.description)
            }
        } catch {
            return (nil, nil, error.description)
        }
    }

    @Test("every shipped blueprint checks, and PostgreSQL's dump is an artifact its restore reads back")
    func shipped() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.shipped.path).filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files {
            let text = try String(contentsOf: Self.shipped.appendingPathComponent(file), encoding: .utf8)
            let result = check(text)
            #expect(result.blueprint != nil, "\(file): \(result.message ?? "")")
        }
        let pg = try #require(check(try String(contentsOf: Self.shipped.appendingPathComponent("postgresql-logical.yaml"), encoding: .utf8)).blueprint)
        #expect(pg.name == "postgresql-logical")
        #expect(pg.volumes == .skip)
        #expect(pg.actions[.backup]?.phases.first?.artifact == true && pg.actions[.backup]?.phases.first?.outputEncoding == .auto)
        #expect(pg.actions[.restore]?.phases.first?.input == "dump")
        #expect(pg.actions[.restore]?.phases.last?.onError == .continue)
        let physical = try #require(check(try String(contentsOf: Self.shipped.appendingPathComponent("postgresql-physical.yaml"), encoding: .utf8)).blueprint)
        #expect(physical.actions[.beforeCapture]?.phases.last?.session?.ready == "cairn:backup-started")
        #expect(physical.actions[.beforeStart]?.phases.map(\.input) == ["backup-mode", "wal"])
        #expect(physical.exclude.contains("pg_wal/*") && physical.exclude.contains("postmaster.pid"))
        // A delete action reads the artifacts of the backup it cleans up after.
        #expect(check("metadata: {name: x}\nspec:\n  actions:\n    backup:\n      phases:\n      - {name: id, exec: {command: [x]}, output: artifact}\n"
                      + "    delete:\n      phases:\n      - {name: drop, task: {image: x, command: [x]}, input: id}\n")
                    .blueprint?.actions[.delete]?.phases.first?.input == "id")
        let mariadb = try #require(check(try String(contentsOf: Self.shipped.appendingPathComponent("mariadb-physical.yaml"), encoding: .utf8)).blueprint)
        #expect(mariadb.volumes == .snapshot && mariadb.volumes.readsVolumes)
        #expect(mariadb.actions[.beforeCapture]?.phases.first?.session?.end.contains("UNLOCK TABLES") == true)
        let standby = try #require(check(try String(contentsOf: Self.shipped.appendingPathComponent("postgresql-standby.yaml"), encoding: .utf8)).blueprint)
        #expect(standby.actions[.backup]?.phases.first?.podWhere?.stdout == "t")
        #expect(standby.actions[.restore]?.phases.allSatisfy { $0.podWhere?.stdout == "f" && $0.podWhere?.otherwiseAny == false } == true)
    }

    @Test("every kind of phase, deferred phases and defaults are read")
    func kinds() throws {
        let result = check("""
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: all-kinds}
            spec:
              actions:
                beforeCapture:
                  phases:
                  - {name: stop, scale: {replicas: 0}}
                  - {name: gone, wait: {workload: Deployment/web, for: stopped}, timeout: 90s}
                  - name: flush
                    exec: {selector: app=db, pods: all, container: main, command: [sync]}
                    onError: continue
                  - name: report
                    task:
                      image: cairn.local/busybox:1.35
                      command: [sh, -c, 'echo {{ namespace }} {{ phases.flush.output }}']
                      env:
                      - {name: WHO, value: "{{ workload.name }}"}
                      - {name: PASSWORD, secretKeyRef: {name: db, key: password}}
                  deferred:
                  - {name: back, scale: {replicas: "{{ workload.replicas }}", wait: false}}
            """)
        let blueprint = try #require(result.blueprint, "\(result.message ?? "")")
        let action = try #require(blueprint.actions[.beforeCapture])
        #expect(action.phases.map(\.name) == ["stop", "gone", "flush", "report"])
        #expect(action.phases[0].step == .scale(target: .boundWorkload, replicas: "0", wait: true))
        #expect(action.phases[1].step == .wait(target: .workload(kind: "Deployment", name: "web"), condition: .stopped))
        #expect(action.phases[1].timeout == 90)
        #expect(action.phases[0].timeout == Blueprint.defaultTimeout)
        #expect(action.phases[2].step == .exec(target: .selector("app=db"), all: true, container: "main", command: ["sync"]))
        #expect(action.phases[2].onError == .continue)
        guard case .task(_, _, let env, _) = action.phases[3].step else { Issue.record("not a task"); return }
        #expect(env[1].secret?.name == "db" && env[1].secret?.key == "password" && env[1].value == nil)
        #expect(action.deferred.map(\.name) == ["back"])
        #expect(blueprint.volumes == .capture)
    }

    @Test("mistakes name their field and line", arguments: [
        // (document, line, what the message says)
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: dump\n        exec: {command: [pg_dumpall]}\n        output: file\n",
         7, "must be text"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: dump\n        exec: {command: []}\n", 6, "non-empty list"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: Dump_1\n        exec: {command: [x]}\n", 5, "not a valid phase name"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        scale: {replicas: 0}\n",
         5, "does one thing"),
        ("spec:\n  actions:\n    backups:\n      phases: []\n", 3, "unknown action 'backups'"),
        ("spec:\n  actions:\n    restore:\n      phases:\n      - name: load\n        exec: {command: [psql]}\n        input: dump\n",
         7, "no backup phase stores an artifact named dump"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: ['{{ phases.b.output }}']}\n      - name: b\n        exec: {command: [x]}\n",
         5, "does not run before this one"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: ['{{ secret.password }}']}\n", 5, "unknown template value"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        timeout: soon\n", 7, "not a period"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {workload: Pod/x, command: [x]}\n", 6, "not a workload"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        task: {image: x, command: [x], env: [{name: P, secretKeyRef: {name: s}}]}\n",
         6, "secretKeyRef needs"),
        ("spec:\n  volumes: some\n  actions: {}\n", 2, "must be capture, snapshot or skip"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {pods: all, command: [x]}\n        output: artifact\n",
         7, "one pod"),
        ("spec:\n  actions:\n    restore:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        point: {end: true}\n",
         7, "only the phases of the backup action"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        point: {end: true}\n      - name: b\n        exec: {command: [x]}\n        point: {stderr: started}\n",
         10, "already marked by phase a"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        scale: {replicas: 0}\n        point: {stderr: x}\n",
         7, "only an exec's stderr"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        point: {end: false}\n",
         7, "give end: true"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec:\n          command: [x]\n          where: {command: [y], stdout: t, otherwise: primary}\n",
         8, "must be fail"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec:\n          command: [x]\n          where: {command: [y]}\n",
         8, "stdout: the output"),
        ("spec:\n  actions:\n    afterCapture:\n      phases:\n      - name: a\n        exec:\n          command: [psql]\n          session: {start: x, ready: y, end: z}\n",
         8, "only beforeCapture phases hold a session"),
        ("spec:\n  actions:\n    beforeCapture:\n      phases:\n      - name: a\n        exec:\n          command: [psql]\n          session: {start: x, end: z}\n",
         8, "a session needs start"),
        ("spec:\n  actions:\n    beforeStart:\n      phases:\n      - name: a\n        exec: {command: [x]}\n",
         5, "task phases only"),
        ("spec:\n  actions:\n    restore:\n      phases:\n      - name: a\n        task: {image: x, command: [x], volumes: [{claim: data, mountPath: /d}]}\n",
         6, "only beforeStart tasks mount claims"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - {name: a, exec: {command: [x]}, output: artifact}\n    afterCapture:\n      phases:\n      - {name: a, exec: {command: [x]}, output: artifact}\n",
         8, "already stores an artifact named a"),
        ("spec:\n  exclude: [pg_wal/*, ../etc]\n  actions: {}\n", 2, "without empty, '.' or '..' components"),
        ("spec:\n  volumes: skip\n  exclude: [pg_wal/*]\n  actions: {}\n", 3, "nothing can be excluded"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        outputEncoding: zstd\n",
         7, "only an artifact (output: artifact) is decompressed"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - name: a\n        exec: {command: [x]}\n        output: artifact\n        outputEncoding: gzip\n",
         8, "must be zstd"),
        ("spec:\n  actions:\n    backup:\n      phases:\n      - {name: id, exec: {command: [x]}, output: artifact}\n      - {name: b, exec: {command: [x]}, input: id}\n",
         6, "only restore, beforeStart and delete phases take an input artifact"),
    ])
    func mistakes(document: String, line: Int, says: String) {
        let result = check("apiVersion: cairn.dev/v1alpha1\nkind: Blueprint\nmetadata: {name: bad}\n" + document)
        #expect(result.blueprint == nil)
        #expect(result.message?.contains(says) == true, "\(result.message ?? "nil")")
        #expect(result.line == line + 3, "\(result.message ?? "")")
    }

    @Test("malformed YAML is an error, not a crash")
    func malformed() {
        let result = check("spec:\n  actions: [unclosed\n")
        #expect(result.blueprint == nil)
        #expect(result.message?.contains("malformed YAML") == true)
    }

    @Test("hooks name their pods, and take only the hook points offered")
    func hooks() throws {
        let json = try JSONValue(yaml: """
            beforeCapture:
            - {name: flush, exec: {workload: StatefulSet/db, container: postgres, command: [psql, -c, CHECKPOINT]}}
            afterCapture:
            - {name: done, exec: {selector: app=web, command: [touch, /tmp/done]}}
            """)
        let hooks = try Blueprint.hooks(json, field: "spec.hooks", allowed: ["beforeCapture", "afterCapture"])
        #expect(hooks["beforeCapture"]?.first?.step == .exec(target: .workload(kind: "StatefulSet", name: "db"), all: false,
                                                              container: "postgres", command: ["psql", "-c", "CHECKPOINT"]))
        let unbound = try JSONValue(yaml: "beforeCapture: [{name: a, exec: {command: [x]}}]")
        #expect(throws: ProtectionError.self) { try Blueprint.hooks(unbound, field: "spec.hooks", allowed: ["beforeCapture"]) }
        do {
            _ = try Blueprint.hooks(json, field: "spec.hooks", allowed: ["afterRestore"])
            Issue.record("accepted a hook point that is not offered")
        } catch {
            #expect(error.field == "spec.hooks.afterCapture")
        }
    }

    @Test("a backup phase marks its consistent point; a consistency group names workloads, with a fence timeout")
    func pointsAndGroups() throws {
        let result = check("""
            apiVersion: cairn.dev/v1alpha1
            kind: Blueprint
            metadata: {name: dump}
            spec:
              volumes: skip
              actions:
                backup:
                  phases:
                  - {name: dump, exec: {command: [mariadb-dump, --verbose]}, output: artifact, point: {stderr: "Retrieving table structure"}}
                  - {name: bgsave, exec: {command: [redis-cli, BGSAVE]}, onError: continue}
            """)
        let phases = try #require(result.blueprint?.actions[.backup]?.phases, "\(result.message ?? "")")
        #expect(phases[0].point == .stderr("Retrieving table structure"))
        #expect(phases[1].point == nil)

        let group = try ConsistencyGroup(json: try JSONValue(yaml: "workloads: [StatefulSet/pg, Deployment/writer]\nfenceTimeout: 20s"),
                                         field: "spec.consistencyGroup")
        #expect(group.workloads == ["StatefulSet/pg", "Deployment/writer"])
        #expect(group.fenceTimeout == 20)
        #expect(try ConsistencyGroup(json: try JSONValue(yaml: "workloads: [StatefulSet/pg]"), field: "g").fenceTimeout
                == ConsistencyGroup.defaultFenceTimeout)
        for (yaml, field) in [("workloads: []", "g.workloads"), ("workloads: [Pod/x]", "g.workloads[0]"),
                              ("workloads: [StatefulSet/a, StatefulSet/a]", "g.workloads[1]"),
                              ("workloads: [StatefulSet/a]\nfenceTimeout: soon", "g.fenceTimeout"),
                              ("workloads: [StatefulSet/a]\nmembers: [x]", "g.members")] {
            let json = try JSONValue(yaml: yaml)
            do {
                _ = try ConsistencyGroup(json: json, field: "g")
                Issue.record("accepted \(yaml)")
            } catch {
                #expect(error.field == field, "\(yaml): \(error.description)")
            }
        }
        let hook = try JSONValue(yaml: "beforeCapture: [{name: a, exec: {workload: StatefulSet/db, command: [x]}, point: {end: true}}]")
        #expect(throws: ProtectionError.self) { try Blueprint.hooks(hook, field: "spec.hooks", allowed: ["beforeCapture"]) }
    }

    @Test("templates splice values into one argument and refuse unknown names")
    func templates() throws {
        let values = ["namespace": "shop", "workload.name": "db", "phases.lsn.output": "0/3000060; rm -rf /"]
        #expect(try BlueprintTemplate.render("{{namespace}}/{{ workload.name }}", values) == "shop/db")
        #expect(try BlueprintTemplate.render("lsn={{ phases.lsn.output }}", values) == "lsn=0/3000060; rm -rf /")
        #expect(throws: ProtectionError.self) { try BlueprintTemplate.render("{{ nope }}", values) }
        #expect(throws: ProtectionError.self) { try BlueprintTemplate.render("{{ open", values) }
        #expect(throws: Never.self) { try BlueprintTemplate.check("{{ time }} {{ phases.a.output }}", phases: ["a"]) }
    }
}
