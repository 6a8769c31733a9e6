import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a webhook may be sent: http(s) to a public address. Loopback, private, link-local,
/// carrier-grade NAT, multicast and reserved ranges are refused (the server would otherwise
/// reach into its own network for whoever submits a job), unless the host or address is on
/// `webhook_allow_hosts`. Checked when the job is submitted and again before every delivery,
/// since a name can be pointed elsewhere in between.
public enum CallbackURL {
    /// Syntax only (no lookup): for parsing options.
    public static func parse(_ text: String) throws -> URL {
        let refused = StemifyError(.invalidOption, "'callback_url' must be an http or https URL without credentials, at most 2048 characters")
        guard text.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty, url.user == nil, url.password == nil
        else { throw refused }
        return url
    }

    /// Refuses `text` unless every address its host has is public or allowed.
    public static func check(_ text: String, allowedHosts: [String]) throws {
        let url = try parse(text)
        let host = (url.host ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if allowedHosts.contains(where: { $0.lowercased() == host }) { return }
        let addresses = resolve(host)
        guard !addresses.isEmpty else {
            throw StemifyError(.invalidOption, "'callback_url': the host '\(host.prefix(255))' does not resolve")
        }
        for address in addresses where !allowedHosts.contains(address) && !isPublic(address) {
            throw StemifyError(.invalidOption, "'callback_url' points at a private or reserved address; allow it with webhook_allow_hosts")
        }
    }

    /// The host's addresses as text (IPv4 dotted, IPv6 colon form).
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var out: [String] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let n = node {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(n.pointee.ai_addr, n.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            node = n.pointee.ai_next
        }
        return out
    }

    /// Whether an address (text) is one the public internet routes.
    public static func isPublic(_ address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 { return isPublic(v4: UInt32(bigEndian: v4.s_addr)) }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address.split(separator: "%").first.map(String.init) ?? address, &v6) == 1 else { return false }
        let b = withUnsafeBytes(of: v6) { Array($0) }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF {
            return isPublic(v4: UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15]))
        }
        if b.allSatisfy({ $0 == 0 }) || (b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1) { return false }  // :: and ::1
        if b[0] & 0xFE == 0xFC { return false }  // fc00::/7 unique local
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return false }  // fe80::/10 link-local
        if b[0] == 0xFF { return false }  // multicast
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8 { return false }  // documentation
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B { return false }  // NAT64 may reach private v4
        return true
    }

    static func isPublic(v4 a: UInt32) -> Bool {
        let blocked: [(UInt32, Int)] = [
            (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16), (0xAC10_0000, 12),
            (0xC000_0000, 24), (0xC000_0200, 24), (0xC058_6300, 24), (0xC0A8_0000, 16), (0xC612_0000, 15), (0xC633_6400, 24),
            (0xCB00_7100, 24), (0xE000_0000, 4), (0xF000_0000, 4),
        ]
        return !blocked.contains { network, bits in a >> UInt32(32 - bits) == network >> UInt32(32 - bits) }
    }
}
