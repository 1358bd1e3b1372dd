// fuzz-sources: Sources/RecDBServer/WireRequest.swift
// The wire path's HTTP/1.1 head parser (`WireRequestParser`, compiled in from RecDBServer: it imports
// nothing): any bytes, whole and a byte at a time with the resume hint, as `RecommendationWirePath` reads
// them. Besides crashes, a finding is a request taken that is not the strict head the parser promises
// (checked here from the bytes), or one the byte-by-byte reading takes differently from the whole.
import Foundation

private let prefix = Array("GET /v1/users/".utf8)
private let headEnd = Array("\r\n\r\n".utf8)

func fuzzOne(_ bytes: [UInt8]) {
    let whole = bytes.withUnsafeBytes { WireRequestParser.parse($0) }
    check(whole, bytes)
    guard !bytes.isEmpty else { return }
    var scanned = 0
    for cut in 1...bytes.count {
        let piece = Array(bytes[..<cut])
        let result = piece.withUnsafeBytes { WireRequestParser.parse($0, scanned: scanned) }
        check(result, piece)
        switch result {
        case .incomplete(let searched):
            precondition(searched >= 0 && searched <= cut, "resume point \(searched) outside \(cut) bytes")
            scanned = searched
        case .request(_, let length):
            precondition(cut == length, "taken at \(cut) bytes but its head has \(length)")
            precondition(result == whole, "byte by byte: \(result), whole: \(whole)")
            return
        case .decline:
            if case .request = whole { preconditionFailure("declined at \(cut) bytes, taken whole: \(whole)") }
            return
        }
    }
    if case .incomplete = whole {} else { preconditionFailure("waiting byte by byte, whole: \(whole)") }
}

private func check(_ result: WireParse, _ bytes: [UInt8]) {
    guard case .request(let request, let length) = result else { return }
    precondition(length <= bytes.count && length <= WireRequestParser.maxHeadBytes)
    let head = Array(bytes[..<length])
    precondition(head.starts(with: prefix) && head.suffix(4).elementsEqual(headEnd), "not a GET head ending in CRLF CRLF")
    for i in 0..<(head.count - 4) where Array(head[i..<(i + 4)]) == headEnd { preconditionFailure("an earlier head end at \(i)") }
    for (i, b) in head.enumerated() {
        precondition(b == 0x09 || b == 0x0D || b == 0x0A || (0x20...0x7E).contains(b), "byte \(b) at \(i)")
        if b == 0x0A { precondition(i > 0 && head[i - 1] == 0x0D, "bare LF at \(i)") }
        if b == 0x0D { precondition(i + 1 < head.count && head[i + 1] == 0x0A, "bare CR at \(i)") }
    }
    let text = String(decoding: head, as: UTF8.self)
    let lines = text.components(separatedBy: "\r\n")
    precondition(lines[0] == "GET \(request.target) HTTP/1.1", "request line \(lines[0].debugDescription)")
    precondition(request.target.hasPrefix("/v1/users/\(request.id)/recommendations"))
    precondition(!request.id.isEmpty && !request.id.contains("/") && !request.id.contains("?"))
    for line in lines.dropFirst() {
        let name = line.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        precondition(!["content-length", "transfer-encoding", "expect", "upgrade"].contains(name), "field \(name)")
        precondition(!line.hasPrefix(" ") && !line.hasPrefix("\t"), "folded line")
    }
    precondition(lines.filter { $0.lowercased().hasPrefix("host:") }.count == 1, "Host fields")
}
