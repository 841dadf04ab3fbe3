import Foundation
import Kube
import Testing

@Suite("JSON and YAML values")
struct JSONValueTests {
    @Test("parses and re-serializes every JSON type, escapes and surrogate pairs included")
    func roundTrip() throws {
        let text = #"{"a":[1,-2,3.5,1e3,true,false,null],"big":9007199254740993,"s":"q\"b\\s\/\n\t\u00e9\ud83d\ude00","o":{}}"#
        let value = try JSONValue(parsing: text)
        #expect(value["big"] == .int(9_007_199_254_740_993))
        #expect(value["a"]?.array?[2] == .double(3.5))
        #expect(value["a"]?.array?[3] == .double(1000))
        #expect(value["s"]?.string == "q\"b\\s/\n\té😀")
        let again = try JSONValue(parsing: value.serialized())
        #expect(again == value)
        // Foundation reads what we write.
        let foundation = try JSONSerialization.jsonObject(with: value.serializedData()) as? [String: Any]
        #expect(foundation?["s"] as? String == "q\"b\\s/\n\té😀")
        #expect(value.description.hasPrefix(#"{"a":[1,-2,3.5,1000,true,false,null],"big":9007199254740993"#))
    }

    @Test("malformed JSON is an error that says where", arguments: [
        "{", #"{"a" 1}"#, "[1,]", #""unterminated"#, "tru", "01x", #"{"a":1} extra"#, #""\ud800""#, "-",
    ])
    func malformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    @Test("path subscripts read and create nested members")
    func paths() {
        var value: JSONValue = [:]
        value["metadata", "labels", "app"] = "db"
        #expect(value["metadata", "labels", "app"]?.string == "db")
        value["metadata", "labels", "app"] = nil
        #expect(value["metadata", "labels"] == .emptyObject)
    }

    @Test("YAML: typed scalars, flow style, several documents; bad YAML is a clear error")
    func yaml() throws {
        let docs = try JSONValue.parseYAMLDocuments("""
            a: 1
            b: true
            c: "1"
            d: ~
            e: {f: [x, 2.5]}
            ---
            ---
            kind: Second
            """)
        #expect(docs.count == 2)
        #expect(docs[0]["a"] == .int(1))
        #expect(docs[0]["b"] == .bool(true))
        #expect(docs[0]["c"] == .string("1"))
        #expect(docs[0]["d"] == .null)
        #expect(docs[0]["e", "f"] == ["x", 2.5])
        #expect(docs[1]["kind"]?.string == "Second")
        #expect(throws: YAMLError.self) { try JSONValue(yaml: "a: [1, 2") }
    }
}

@Suite("JSON Patch (RFC 6902) on the client side")
struct JSONPatchTests {
    func patch(_ document: String, _ operations: String) throws -> JSONValue {
        try JSONPatch.apply(try JSONValue(parsing: operations).array ?? [], to: try JSONValue(parsing: document))
    }

    @Test("the RFC's examples (Appendix A)", arguments: [
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"baz":"qux","foo":"bar"}"#),
        (#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#),
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#),
        (#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#),
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#, #"{"baz":"boo","foo":"bar"}"#),
        (#"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#,
         #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
         #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#),
        (#"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#,
         #"{"foo":["all","cows","eat","grass"]}"#),
        (#"{"baz":"qux","foo":["a",2,"c"]}"#,
         #"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#,
         #"{"baz":"qux","foo":["a",2,"c"]}"#),
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#,
         #"{"foo":"bar","child":{"grandchild":{}}}"#),
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":10}]"#, #"{"/":9,"~1":10}"#),
        (#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#, #"{"foo":["bar",["abc","def"]]}"#),
        (#"{"a":{"b":1}}"#, #"[{"op":"copy","from":"/a","path":"/c"}]"#, #"{"a":{"b":1},"c":{"b":1}}"#),
    ])
    func rfcExamples(_ document: String, _ operations: String, _ expected: String) throws {
        #expect(try patch(document, operations) == JSONValue(parsing: expected))
    }

    @Test("failures name the operation, and nothing is applied", arguments: [
        (#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#, "test failed"),
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#, "does not exist"),
        (#"{"foo":"bar"}"#, #"[{"op":"replace","path":"/nope","value":1}]"#, "does not exist"),
        (#"{"foo":[1]}"#, #"[{"op":"add","path":"/foo/5","value":1}]"#, "not an index"),
        (#"{"foo":1}"#, #"[{"op":"remove","path":"/foo"},{"op":"frobnicate","path":"/x"}]"#, "unknown op"),
        (#"{"a":{"b":1}}"#, #"[{"op":"move","from":"/a","path":"/a/b/c"}]"#, "into itself"),
        (#"{"a":1}"#, #"[{"op":"add","path":"a","value":1}]"#, "not a JSON pointer"),
    ])
    func failures(_ document: String, _ operations: String, _ reason: String) throws {
        do {
            _ = try patch(document, operations)
            Issue.record("expected a failure")
        } catch let error as JSONPatchError {
            #expect(error.description.contains(reason), "\(error)")
            #expect(error.description.hasPrefix("JSON patch operation"))
        }
    }
}
