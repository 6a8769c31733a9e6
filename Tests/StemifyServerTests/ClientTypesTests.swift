import Foundation
import StemifyTestSupport
import Testing
import Yams

/// The TypeScript client's types (clients/typescript/src/types.ts) against the OpenAPI
/// document the server publishes: every interface has the schema's properties, optional exactly
/// where the schema does not require them, and every union the schema's enum.
@Suite("TypeScript client types follow the OpenAPI document")
struct ClientTypesTests {
    let root = fixturesDirectory().deletingLastPathComponent().deletingLastPathComponent()

    func openAPI() throws -> [String: Any] {
        let text = try String(contentsOf: root.appendingPathComponent("Sources/StemifyServer/Public/openapi.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    func typeScript() throws -> String {
        try String(contentsOf: root.appendingPathComponent("clients/typescript/src/types.ts"), encoding: .utf8)
    }

    /// `name → (property → optional)` of each flat `export interface`.
    func interfaces(_ ts: String) throws -> [String: [String: Bool]] {
        var out: [String: [String: Bool]] = [:]
        let regex = try NSRegularExpression(pattern: #"export interface (\w+) \{\n((?:  [^\n]*\n)*)\}"#)
        for m in regex.matches(in: ts, range: NSRange(ts.startIndex..., in: ts)) {
            let name = String(ts[Range(m.range(at: 1), in: ts)!])
            var props: [String: Bool] = [:]
            for line in ts[Range(m.range(at: 2), in: ts)!].split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard !trimmed.hasPrefix("/"), let colon = trimmed.firstIndex(of: ":") else { continue }
                let key = String(trimmed[..<colon])
                props[key.hasSuffix("?") ? String(key.dropLast()) : key] = key.hasSuffix("?")
            }
            out[name] = props
        }
        return out
    }

    /// The string literals of `export type NAME = "a" | "b";`.
    func union(_ ts: String, _ name: String) throws -> Set<String> {
        let regex = try NSRegularExpression(pattern: #"export type \#(name) =([^;]*);"#)
        let m = try #require(regex.firstMatch(in: ts, range: NSRange(ts.startIndex..., in: ts)), "no type \(name)")
        let body = ts[Range(m.range(at: 1), in: ts)!]
        return Set(body.split(separator: "|")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            .filter { !$0.isEmpty })
    }

    func schema(_ doc: [String: Any], _ path: [String]) throws -> [String: Any] {
        var node: Any = doc
        for key in path { node = try #require((node as? [String: Any])?[key], "no \(path.joined(separator: "."))") }
        return try #require(node as? [String: Any])
    }

    @Test("interfaces: same properties, optional where the schema does not require them")
    func properties() throws {
        let doc = try openAPI(), ts = try interfaces(try typeScript())
        let schemas = ["components", "schemas"]
        let mapping: [(String, [String])] = [
            ("Accepted", schemas + ["Accepted"]),
            ("Job", schemas + ["Job"]),
            ("JobOptions", schemas + ["JobOptions"]),
            ("JobWebhook", schemas + ["Job", "properties", "webhook"]),
            ("WebhookDelivery", schemas + ["WebhookDelivery"]),
            ("Stem", schemas + ["Job", "properties", "stems", "items"]),
            ("JobError", schemas + ["Job", "properties", "error"]),
            ("JobMetrics", schemas + ["Job", "properties", "metrics"]),
            ("Model", schemas + ["Model"]),
            ("Limits", schemas + ["Limits"]),
            ("Batch", schemas + ["Batch"]),
            ("BatchSong", schemas + ["BatchSong"]),
            ("Peaks", schemas + ["Peaks"]),
            ("MixRequest", schemas + ["MixRequest"]),
            ("StemMix", schemas + ["MixRequest", "properties", "stems", "additionalProperties"]),
        ]
        for (name, path) in mapping {
            let s = try schema(doc, path)
            let properties = Set((try #require(s["properties"] as? [String: Any])).keys)
            let required = Set(s["required"] as? [String] ?? [])
            let mine = try #require(ts[name], "types.ts has no interface \(name)")
            #expect(Set(mine.keys) == properties, "\(name): \(Set(mine.keys).symmetricDifference(properties).sorted()) differ")
            #expect(Set(mine.filter { !$0.value }.keys) == required, "\(name): required \(required.sorted()) vs \(mine.filter { !$0.value }.keys.sorted())")
        }
    }

    @Test("unions: the schema's enums")
    func enums() throws {
        let doc = try openAPI(), ts = try typeScript()
        let schemas = ["components", "schemas"]
        let mapping: [(String, [String])] = [
            ("ErrorCode", schemas + ["ErrorCode"]),
            ("JobStatus", schemas + ["Job", "properties", "status"]),
            ("OutputFormat", schemas + ["Job", "properties", "stems", "items", "properties", "format"]),
            ("Quality", schemas + ["Limits", "properties", "qualities", "items"]),
            ("BatchStatus", schemas + ["Batch", "properties", "status"]),
        ]
        for (name, path) in mapping {
            let expected = Set(try #require(try schema(doc, path)["enum"] as? [String]))
            #expect(try union(ts, name) == expected, "\(name) differs from \(path.joined(separator: "."))")
        }
    }
}
