/// The requests `RecommendationWirePath` answers straight from the socket's bytes, without NIO's HTTP decoder:
/// `GET /v1/users/ID/recommendations[?QUERY] HTTP/1.1` with a head in a strict subset of RFC 9112, and no body.
///
/// The parser only says yes to heads whose end no HTTP/1.1 parser can read differently: CRLF line ends
/// only, single spaces in the request line, field names of token characters directly followed by a colon,
/// field values of visible ASCII, spaces and tabs, exactly one Host, at most one Authorization, and none of
/// the fields that give a request a body or change the connection (Content-Length, Transfer-Encoding,
/// Expect, Upgrade, a Connection other than keep-alive). The head ends at the first empty line, and so does
/// the request. Everything else is `decline`: those bytes, and every byte after them on the connection, go
/// to NIO's decoder exactly as they arrived, so a request this parser does not take is read as it always was.
///
/// Pure Swift without imports, so the fuzz target (`Fuzz/Targets/httpwire.swift`) compiles it on its own.
struct WireRequest: Equatable {
    /// The request-target as sent: `/v1/users/ID/recommendations` and an optional `?query`.
    var target: String
    /// The raw (still percent-encoded) ID segment, never empty.
    var id: String
    /// The Authorization field's value without surrounding spaces, if the request has one.
    var authorization: String?
}

enum WireParse: Equatable {
    /// Every byte so far fits a request this path answers: wait for more. `scanned` bytes hold no head end.
    case incomplete(scanned: Int)
    /// Not a request this path answers: the bytes go to NIO's decoder.
    case decline
    /// A whole request; its head (and the request) is the first `length` bytes.
    case request(WireRequest, length: Int)
}

enum WireRequestParser {
    /// A head longer than this is left to NIO's decoder (whose own limits then apply).
    static let maxHeadBytes = 8192
    /// More header lines than this: left to NIO's decoder.
    static let maxFields = 64

    private static let prefix: [UInt8] = Array("GET /v1/users/".utf8)
    private static let suffix: [UInt8] = Array("/recommendations".utf8)
    private static let version: [UInt8] = Array(" HTTP/1.1".utf8)
    private static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")

    /// Parses the start of `bytes`. `scanned`: how many bytes an earlier `.incomplete` answer already searched
    /// for the end of the head (so a head arriving a byte at a time is not searched from the start each time).
    static func parse(_ bytes: UnsafeRawBufferPointer, scanned: Int = 0) -> WireParse {
        // The request line's start decides at once: other methods and routes never wait here.
        let start = min(bytes.count, prefix.count)
        for i in 0..<start where bytes[i] != prefix[i] { return .decline }
        guard bytes.count > prefix.count else { return .incomplete(scanned: 0) }
        switch headEnd(bytes, from: max(scanned, 0)) {
        case .end(let end):
            guard end <= maxHeadBytes else { return .decline }
            return parseHead(UnsafeRawBufferPointer(rebasing: bytes[0..<end])).map { .request($0, length: end) } ?? .decline
        case .needMore(let searched):
            return searched >= maxHeadBytes ? .decline : .incomplete(scanned: searched)
        case .invalid:
            return .decline
        }
    }

    private enum Scan { case end(Int), needMore(searched: Int), invalid }

    /// Looks for the first CRLF CRLF from `from` on, within the first `maxHeadBytes` + 4 bytes. A byte no head
    /// this parser takes can hold (a CR or LF not in a CRLF, another control byte, a non-ASCII byte) ends the
    /// search at once: the request is declined rather than waited for, however it goes on.
    private static func headEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Scan {
        let limit = min(bytes.count, maxHeadBytes + 4)
        var i = from
        while i < limit {
            let b = bytes[i]
            if b >= 0x20 && b < 0x7F || b == tab {
                i += 1
                continue
            }
            if b == cr {
                if i + 1 < limit && bytes[i + 1] != lf { return .invalid }
            } else if b == lf {
                guard i > 0 && bytes[i - 1] == cr else { return .invalid }
                if i >= 3 && bytes[i - 2] == lf && bytes[i - 3] == cr { return .end(i + 1) }
            } else {
                return .invalid
            }
            i += 1
        }
        // Resume at the last byte: a CR there is checked again once its next byte has come.
        return .needMore(searched: max(limit - 1, 0))
    }

    /// `head` is a whole head ending in CRLF CRLF.
    private static func parseHead(_ head: UnsafeRawBufferPointer) -> WireRequest? {
        // The request line: "GET " target " HTTP/1.1" CRLF.
        guard let requestLineEnd = lineEnd(head, from: 0) else { return nil }
        let targetEnd = requestLineEnd - version.count
        guard targetEnd > prefix.count else { return nil }
        for (i, b) in version.enumerated() where head[targetEnd + i] != b { return nil }
        let targetStart = prefix.count - "/v1/users/".utf8.count
        // The target: visible ASCII, no fragment; "/v1/users/" ID "/recommendations" and "?..." or nothing.
        for i in targetStart..<targetEnd where !(0x21...0x7E).contains(head[i]) || head[i] == UInt8(ascii: "#") { return nil }
        var idEnd = prefix.count
        while idEnd < targetEnd && head[idEnd] != UInt8(ascii: "/") && head[idEnd] != UInt8(ascii: "?") { idEnd += 1 }
        guard idEnd > prefix.count, idEnd + suffix.count <= targetEnd else { return nil }
        for (i, b) in suffix.enumerated() where head[idEnd + i] != b { return nil }
        let pathEnd = idEnd + suffix.count
        guard pathEnd == targetEnd || head[pathEnd] == UInt8(ascii: "?") else { return nil }

        // The fields, up to the empty line.
        var hosts = 0, fields = 0
        var authorization: String?
        var at = requestLineEnd + 2
        while true {
            guard let end = lineEnd(head, from: at) else { return nil }
            if end == at { break }  // the empty line
            fields += 1
            guard fields <= maxFields else { return nil }
            var colon = at
            while colon < end && isTokenByte(head[colon]) { colon += 1 }
            guard colon > at, colon < end, head[colon] == UInt8(ascii: ":") else { return nil }
            var valueStart = colon + 1, valueEnd = end
            for i in valueStart..<valueEnd where !(head[i] == tab || (0x20...0x7E).contains(head[i])) { return nil }
            while valueStart < valueEnd && (head[valueStart] == space || head[valueStart] == tab) { valueStart += 1 }
            while valueEnd > valueStart && (head[valueEnd - 1] == space || head[valueEnd - 1] == tab) { valueEnd -= 1 }
            let name = UnsafeRawBufferPointer(rebasing: head[at..<colon])
            let value = UnsafeRawBufferPointer(rebasing: head[valueStart..<valueEnd])
            if equalsIgnoringCase(name, "host") {
                hosts += 1
            } else if equalsIgnoringCase(name, "authorization") {
                guard authorization == nil else { return nil }
                authorization = String(decoding: value, as: UTF8.self)
            } else if equalsIgnoringCase(name, "connection") {
                guard equalsIgnoringCase(value, "keep-alive") else { return nil }
            } else if equalsIgnoringCase(name, "content-length") || equalsIgnoringCase(name, "transfer-encoding")
                        || equalsIgnoringCase(name, "expect") || equalsIgnoringCase(name, "upgrade") {
                return nil
            }
            at = end + 2
        }
        guard hosts == 1, at + 2 == head.count else { return nil }
        return WireRequest(target: String(decoding: UnsafeRawBufferPointer(rebasing: head[targetStart..<targetEnd]), as: UTF8.self),
                           id: String(decoding: UnsafeRawBufferPointer(rebasing: head[prefix.count..<idEnd]), as: UTF8.self),
                           authorization: authorization)
    }

    /// The index of the CR of the line starting at `from`, when the line ends in CRLF and holds no other CR
    /// or LF; nil otherwise (a bare CR or LF, or no line end).
    private static func lineEnd(_ head: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from
        while i < head.count {
            let b = head[i]
            if b == cr { return i + 1 < head.count && head[i + 1] == lf ? i : nil }
            if b == lf { return nil }
            i += 1
        }
        return nil
    }

    /// RFC 9110's tchar.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// ASCII case-insensitive comparison with a lowercase literal.
    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        for i in 0..<bytes.count {
            var b = bytes[i]
            if b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") { b += 32 }
            if b != expected[i] { return false }
        }
        return true
    }
}
