import Foundation
import XCTest
@testable import RecDB
@testable import RecDBServer

/// The hand-written serving JSON is byte for byte what JSONEncoder (sorted keys, slashes unescaped)
/// writes for the same values, including the awkward ones.
final class ResponseJSONTests: XCTestCase {
    private func reference<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    private let awkwardStrings = [
        "", "plain", "a/b", "quote \" backslash \\", "tab\tnew\nline\rcr", "\u{8}\u{C}", "nul \u{0} bell \u{7} esc \u{1B} us \u{1F}",
        "del \u{7F}", "é ü 東京 🙂", "\u{2028}\u{2029}", "</script>",
        // Escapes first, last and back to back, and a long run without one (copied whole).
        "\"starts", "ends\\", "\n\n\"\"\u{1}", String(repeating: "Nail Lacquer, 0.5 Fl Oz — ", count: 12),
    ]
    private let awkwardScores: [Float] = [0, -0.0, 1, -1, 0.1, 1e-5, 1.5e-7, 123456.78, 3.4028235e38, -Float.leastNormalMagnitude, 1e10, 0.3333333, 100]

    private func items(_ n: Int, seed: Int) -> [ScoredItem] {
        (0..<n).map { i in
            let s = awkwardStrings[(i + seed) % awkwardStrings.count]
            return ScoredItem(item: "i\(i)" + s, id: UInt32(i * 7919 + seed), score: awkwardScores[(i * 3 + seed) % awkwardScores.count],
                              title: i % 3 == 0 ? nil : "title " + s)
        }
    }

    func testRecommendationsMatchJSONEncoder() throws {
        for seed in 0..<6 {
            let r = Recommendations(user: seed % 2 == 0 ? nil : "user " + awkwardStrings[seed], model: "m/\(seed)",
                                    version: UInt32.max - UInt32(seed), source: [.sequence, .profile, .popularity][seed % 3],
                                    items: items(seed * 5, seed: seed))
            XCTAssertEqual(try ResponseJSON.encode(r), try reference(r), "seed \(seed)")
            let list = [r, r]
            XCTAssertEqual(try ResponseJSON.encode(results: list), try reference(RecommendationList(results: list)))
            XCTAssertEqual(try ResponseJSON.encode(results: []), try reference(RecommendationList(results: [])))
        }
    }

    /// The cached item fragments write the same bytes, also when an id comes back with another external id
    /// or title (another snapshot's), when items collide in the cache, and when a title appears or goes.
    func testCachedItemFragmentsWriteTheSameBytes() throws {
        for capacity in [1, 4, 16_384] {
            let fragments = ItemFragments(capacity: capacity)
            for seed in 0..<8 {
                var list = items(9, seed: seed % 3)
                if seed >= 3 { list = list.map { var i = $0; i.title = i.title.map { $0 + " v\(seed)" } ?? "now titled"; return i } }
                if seed >= 6 { list = list.map { var i = $0; i.item += "!"; i.title = nil; return i } }
                let r = Recommendations(user: "u\(seed)", model: "m", version: 3, source: .sequence, items: list)
                XCTAssertEqual(try ResponseJSON.encode(r, fragments: fragments), try reference(r), "capacity \(capacity), seed \(seed)")
                XCTAssertEqual(try ResponseJSON.encode(r, fragments: fragments), try ResponseJSON.encode(r), "again: capacity \(capacity), seed \(seed)")
            }
        }
    }

    func testItemListsMatchJSONEncoder() throws {
        for n in [0, 1, 13] {
            let list = items(n, seed: n)
            XCTAssertEqual(try ResponseJSON.encode(items: list), try reference(ItemList(items: list)), "\(n) items")
        }
    }

    func testEveryControlCharacterAndSomeFloatsMatch() throws {
        let all = String(String.UnicodeScalarView((0..<0x80).compactMap(Unicode.Scalar.init)))
        let list = [ScoredItem(item: all, id: 1, score: 0.5, title: all)]
        XCTAssertEqual(try ResponseJSON.encode(items: list), try reference(ItemList(items: list)))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let f = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            guard f.isFinite else { continue }
            let one = [ScoredItem(item: "x", id: 0, score: f, title: nil)]
            XCTAssertEqual(try ResponseJSON.encode(items: one), try reference(ItemList(items: one)), "score \(f)")
        }
    }

    func testNonFiniteScoresAreRefusedLikeJSONEncoder() {
        for f in [Float.nan, .infinity, -.infinity] {
            let one = [ScoredItem(item: "x", id: 0, score: f, title: nil)]
            XCTAssertThrowsError(try reference(ItemList(items: one)))
            XCTAssertThrowsError(try ResponseJSON.encode(items: one))
        }
    }
}
