/// The few values Stemify reads from S3's XML answers (`Key`, `UploadId`, `NextContinuationToken`,
/// `Code`, `Message`). S3 writes these as flat text elements, so a scanner that finds each
/// `<Name>text</Name>` and decodes the five predefined entities and numeric references is
/// enough, and small enough to fuzz (`scripts/fuzz.sh`, target `s3xml`); anything it does not
/// recognise it leaves out rather than guesses.
package enum S3XML {
    /// The text of every `<name>…</name>` element, in document order.
    package static func values(_ name: String, in xml: String) -> [String] {
        let open = "<\(name)>", close = "</\(name)>"
        var found: [String] = []
        var rest = xml[...]
        while let start = rest.firstRange(of: open) {
            rest = rest[start.upperBound...]
            guard let end = rest.firstRange(of: close) else { break }
            if let text = decodeEntities(rest[..<end.lowerBound]) { found.append(text) }
            rest = rest[end.upperBound...]
        }
        return found
    }

    /// The first `<name>` value, if any.
    package static func value(_ name: String, in xml: String) -> String? {
        values(name, in: xml).first
    }

    /// `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#N;` `&#xN;`; nil for anything else (markup
    /// inside the element, an unknown entity, a reference outside Unicode).
    package static func decodeEntities(_ text: Substring) -> String? {
        guard !text.contains("<") else { return nil }
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { return nil }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let digits: Substring, radix: Int
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    (digits, radix) = (entity.dropFirst(2), 16)
                } else if entity.hasPrefix("#") {
                    (digits, radix) = (entity.dropFirst(), 10)
                } else {
                    return nil
                }
                guard digits.count <= 8, let code = UInt32(digits, radix: radix), let scalar = Unicode.Scalar(code) else { return nil }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}
