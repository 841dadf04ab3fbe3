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
