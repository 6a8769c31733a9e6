import Yams

/// Flattens a YAML configuration file to `key: string` pairs (lists become comma-separated).
enum ConfigurationReader {
    static func yamlPairs(_ text: String, file: String) throws -> [(String, String)] {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw ConfigurationError(key: file, message: "not valid YAML")
        }
        guard let node else { return [] }
        guard let dict = node as? [String: Any] else { throw ConfigurationError(key: file, message: "top level must be a mapping") }
        return try dict.keys.sorted().map { key in
            let value = dict[key]!
            if let list = value as? [Any] { return (key, list.map { "\($0)" }.joined(separator: ",")) }
            if value is [String: Any] { throw ConfigurationError(key: key, message: "must be a scalar or a list") }
            return (key, "\(value)")
        }
    }
}
