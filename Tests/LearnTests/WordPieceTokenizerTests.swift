// WordPiece tokenizer against Hugging Face's BertTokenizerFast on tricky inputs.
// Expected ids come from `tools/wordpiece_reference.py` (transformers 5.x / tokenizers 0.23, all-MiniLM-L6-v2 vocab),
// pasted verbatim below. Each string exercises one rule: accents, CJK, punctuation, long words, [UNK], controls.

import Foundation
import XCTest
@testable import Learn

final class WordPieceTokenizerTests: XCTestCase {
    static let referenceCases: [(String, [Int])] = [
        ("Hello, World!", [101, 7592, 1010, 2088, 999, 102]),
        ("Cr\u{E8}me br\u{FB}l\u{E9}e \u{C5}ngstr\u{F6}m na\u{EF}ve fa\u{E7}ade", [101, 13675, 21382, 7987, 9307, 2063, 17076, 15687, 15743, 8508, 102]),
        ("\u{C0}\u{C9}\u{CE}\u{D5}\u{DC} \u{E0}\u{E9}\u{EE}\u{F5}\u{FC} \u{D1}\u{F1} \u{C7}\u{E7}", [101, 29347, 3695, 2226, 29347, 3695, 2226, 1050, 2078, 10507, 102]),
        ("\u{6771}\u{4EAC}\u{30BF}\u{30EF}\u{30FC} \u{5317}\u{4EAC}\u{5927}\u{5B66} \u{D55C}\u{AD6D}\u{C5B4}", [101, 1879, 1755, 1709, 30262, 30265, 1781, 1755, 1810, 1817, 1469, 30006, 30021, 29991, 30014, 30020, 29999, 30008, 102]),
        ("price: $12.99 (50% off) - 3/4 oz. #1 @home", [101, 3976, 1024, 1002, 2260, 1012, 5585, 1006, 2753, 1003, 2125, 1007, 1011, 1017, 1013, 1018, 11472, 1012, 1001, 1015, 1030, 2188, 102]),
        ("it's \u{201C}quoted\u{201D} \u{2014} em\u{2011}dash \u{2026} ellipsis \u{AB}guillemets\u{BB}", [101, 2009, 1005, 1055, 1523, 9339, 1524, 1517, 7861, 1514, 11454, 1529, 3449, 15000, 6190, 1077, 26458, 6216, 11368, 2015, 1090, 102]),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", [101, 100, 102]),
        ("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", [101, 22861, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 10322, 102]),
        ("unaffable antidisestablishmentarianism", [101, 14477, 20961, 3468, 3424, 10521, 4355, 7875, 13602, 3672, 12199, 2964, 102]),
        ("tab\u{9}new\u{A}line\u{D}\u{A0}nbsp\u{2003}emspace", [101, 21628, 2047, 2240, 1050, 5910, 2361, 29031, 15327, 102]),
        ("zero\u{200B}width soft\u{AD}hyphen ctrl\u{7}bell", [101, 5717, 9148, 11927, 2232, 3730, 10536, 8458, 2368, 14931, 12190, 17327, 102]),
        ("private\u{E000}use replacement\u{FFFD}char", [101, 2797, 8557, 6110, 7507, 2099, 102]),
        ("emoji \u{1F600} \u{2665} \u{2122} \u{A9}", [101, 7861, 29147, 2072, 100, 1625, 1580, 1075, 102]),
        ("[CLS] literal [SEP] and [MASK] and [unk]", [101, 101, 18204, 102, 1998, 103, 1998, 1031, 4895, 2243, 1033, 102]),
        ("\u{130}stanbul \u{3A3}\u{38A}\u{3A3}\u{3A5}\u{3A6}\u{39F}\u{3A3} stra\u{DF}e", [101, 9960, 1173, 18199, 29733, 29735, 29736, 29730, 29733, 2358, 27807, 102]),
        ("\u{FB01}ne \u{FF46}\u{FF55}\u{FF4C}\u{FF4C}\u{FF57}\u{FF49}\u{FF44}\u{FF54}\u{FF48} \u{2460}", [101, 1984, 2638, 100, 100, 102]),
        ("", [101, 102]),
        ("   \u{9}  ", [101, 102]),
        ("L'Or\u{E9}al Paris Revitalift Anti-Wrinkle + Firming Moisturizer SPF 18, 1.7 Ounce", [101, 1048, 1005, 10848, 2389, 3000, 7065, 18400, 10128, 2102, 3424, 1011, 23277, 19839, 2571, 1009, 3813, 2075, 11052, 9496, 6290, 11867, 2546, 2324, 1010, 1015, 1012, 1021, 19471, 102]),
        ("x1y2z3 123456789 3.14159 e=mc\u{B2}", [101, 1060, 2487, 2100, 2475, 2480, 2509, 13138, 19961, 2575, 2581, 2620, 2683, 1017, 1012, 15471, 28154, 1041, 1027, 11338, 10701, 102]),
    ]

    static let loadedTokenizer = Result {
        try WordPieceTokenizer(vocabularyFile: SentenceEncoderTestPaths.miniLM.appendingPathComponent("vocab.txt"))
    }
    func miniLMTokenizer() throws -> WordPieceTokenizer {
        try SentenceEncoderTestPaths.requireMiniLM()
        return try Self.loadedTokenizer.get()
    }

    func testMatchesHuggingFaceOnTrickyStrings() throws {
        let tokenizer = try miniLMTokenizer()
        XCTAssertEqual(tokenizer.vocabulary.count, 30522)
        for (text, expected) in Self.referenceCases {
            XCTAssertEqual(tokenizer.encode(text), expected, "text \(text.debugDescription)")
        }
    }

    func testTruncationKeepsClassifierAndSeparator() throws {
        let tokenizer = try miniLMTokenizer()
        // From tools/wordpiece_reference.py: truncation=True, max_length=8.
        XCTAssertEqual(tokenizer.encode("one two three four five six seven eight nine ten eleven", maxLength: 8),
                       [101, 2028, 2048, 2093, 2176, 2274, 2416, 102])
        XCTAssertEqual(tokenizer.encode("one two", maxLength: 2), [101, 102])
    }

    func testPiecesOfAWord() throws {
        let tokenizer = try miniLMTokenizer()
        XCTAssertEqual(tokenizer.tokenize("unaffable"), ["una", "##ffa", "##ble"])
        XCTAssertEqual(tokenizer.tokenize("Crème"), ["cr", "##eme"])
    }

    /// A hand-made vocabulary, so the rules are checked independently of any model file.
    func testRulesOnSmallVocabulary() throws {
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "a", "##b", ",", "!", "中", "cafe", "x"]
        var configuration = WordPieceTokenizer.Configuration()
        configuration.maxInputCharactersPerWord = 5
        let tokenizer = try WordPieceTokenizer(vocabulary: vocabulary, configuration: configuration)
        XCTAssertEqual(tokenizer.encode("UNAFFABLE"), [2, 1, 3], "9 characters > 5 → whole word [UNK]")
        configuration.maxInputCharactersPerWord = 100
        let wide = try WordPieceTokenizer(vocabulary: vocabulary, configuration: configuration)
        XCTAssertEqual(wide.encode("UNAFFABLE,ab!"), [2, 5, 6, 7, 10, 8, 9, 11, 3])
        XCTAssertEqual(wide.encode("unaffablez"), [2, 1, 3], "no piece for the tail → the whole word is [UNK]")
        XCTAssertEqual(wide.encode("x中x"), [2, 14, 12, 14, 3], "CJK ideograph split out of a word")
        XCTAssertEqual(wide.encode("Café"), [2, 13, 3], "accent stripped when lower-casing")
        XCTAssertEqual(wide.encode("a\u{0}\u{7}b"), [2, 8, 9, 3], "controls removed without splitting the word: 'ab' → a ##b")
        XCTAssertEqual(wide.encode("a\tb"), [2, 8, 1, 3], "tab is whitespace: words 'a' and 'b'; 'b' only exists as '##b' → [UNK]")
        configuration.lowercase = false
        let cased = try WordPieceTokenizer(vocabulary: vocabulary, configuration: configuration)
        XCTAssertEqual(cased.encode("Café cafe"), [2, 1, 13, 3], "cased: no lower-casing, no accent stripping")
    }

    func testMissingSpecialTokenIsAnError() {
        XCTAssertThrowsError(try WordPieceTokenizer(vocabulary: ["[PAD]", "[UNK]", "[CLS]"])) { error in
            XCTAssertEqual(error as? WordPieceTokenizerError, .missingSpecialToken(file: "vocabulary", token: "[SEP]"))
        }
        XCTAssertThrowsError(try WordPieceTokenizer(vocabulary: []))
        XCTAssertThrowsError(try WordPieceTokenizer(vocabularyFile: URL(fileURLWithPath: "/nonexistent/vocab.txt"))) { error in
            guard case .unreadableVocabulary(let file, _)? = error as? WordPieceTokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, "/nonexistent/vocab.txt")
        }
    }
}
