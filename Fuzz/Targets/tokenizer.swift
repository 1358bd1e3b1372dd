// vocab.txt and WordPiece: the input up to the first 0xFF byte is a vocabulary file, the rest is text to
// tokenise with it (and with a fixed small vocabulary, so the text path is covered even when the fuzzed
// vocabulary lacks the special tokens).
import Foundation
import Learn

let fixedTokenizer = try! WordPieceTokenizer(vocabulary: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "red", "##s", "é", "日"])

func fuzzOne(_ bytes: [UInt8]) {
    let split = bytes.firstIndex(of: 0xFF) ?? bytes.count
    let vocabularyPath = Scratch.write(Array(bytes[..<split]), as: "vocab.txt")
    let text = String(decoding: bytes[min(split + 1, bytes.count)...], as: UTF8.self)
    _ = fixedTokenizer.encode(text)
    _ = fixedTokenizer.encode(text, maxLength: 2 + bytes.count % 7)
    var configuration = WordPieceTokenizer.Configuration()
    configuration.maxLength = 16
    if let tokenizer = try? WordPieceTokenizer(vocabularyFile: URL(fileURLWithPath: vocabularyPath), configuration: configuration) {
        _ = tokenizer.encode(text)
    }
}
