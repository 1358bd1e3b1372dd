// The sentence-encoder folder's JSON files (config.json, tokenizer_config.json, sentence_bert_config.json,
// modules.json, 1_Pooling/config.json): a tiny valid model folder is built once; the first input byte picks
// the file the rest of the input replaces; the folder is loaded and, when it loads, encodes two texts.
import Foundation
import Learn

let modelFolder: URL = {
    let folder = URL(fileURLWithPath: Scratch.directory).appendingPathComponent("model")
    try! FileManager.default.createDirectory(at: folder.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
    let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "nail", "polish", "##s", "."]
    let H = 4, I = 8, V = vocabulary.count, P = 8
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func values(_ n: Int) -> [Float] {
        (0..<n).map { _ in state ^= state << 13; state ^= state >> 7; state ^= state << 17; return Float(state % 2001) / 1000 - 1 }
    }
    var tensors: [SafeTensorsWriter.Tensor] = []
    func add(_ name: String, _ shape: [Int]) { tensors.append(.init(name: name, shape: shape, values: values(shape.reduce(1, *)))) }
    add("embeddings.word_embeddings.weight", [V, H]); add("embeddings.position_embeddings.weight", [P, H])
    add("embeddings.token_type_embeddings.weight", [2, H]); add("embeddings.LayerNorm.weight", [H]); add("embeddings.LayerNorm.bias", [H])
    let p = "encoder.layer.0."
    for part in ["query", "key", "value"] { add(p + "attention.self.\(part).weight", [H, H]); add(p + "attention.self.\(part).bias", [H]) }
    add(p + "attention.output.dense.weight", [H, H]); add(p + "attention.output.dense.bias", [H])
    add(p + "attention.output.LayerNorm.weight", [H]); add(p + "attention.output.LayerNorm.bias", [H])
    add(p + "intermediate.dense.weight", [I, H]); add(p + "intermediate.dense.bias", [I])
    add(p + "output.dense.weight", [H, I]); add(p + "output.dense.bias", [H])
    add(p + "output.LayerNorm.weight", [H]); add(p + "output.LayerNorm.bias", [H])
    try! SafeTensorsWriter.image(tensors).write(to: folder.appendingPathComponent("model.safetensors"))
    try! (vocabulary.joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
    return folder
}()

/// The valid contents of each fuzzed file (restored before every input).
let validFiles: [(String, String)] = [
    ("config.json", #"{"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"max_position_embeddings":8,"type_vocab_size":2,"vocab_size":10,"hidden_act":"gelu","model_type":"bert"}"#),
    ("tokenizer_config.json", #"{"do_lower_case":true,"model_max_length":512,"tokenizer_class":"BertTokenizer","unk_token":"[UNK]"}"#),
    ("sentence_bert_config.json", #"{"max_seq_length":6,"do_lower_case":false}"#),
    ("modules.json", #"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#),
    ("1_Pooling/config.json", #"{"word_embedding_dimension":4,"pooling_mode_mean_tokens":true}"#),
]

func fuzzOne(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    for (name, text) in validFiles { try! text.write(to: modelFolder.appendingPathComponent(name), atomically: false, encoding: .utf8) }
    let target = validFiles[Int(first) % validFiles.count].0
    try! Data(bytes.dropFirst()).write(to: modelFolder.appendingPathComponent(target))
    if let encoder = try? SentenceEncoder(modelDirectory: modelFolder, threadCount: 1) {
        _ = try? encoder.encode(["red nail polish", "!!! ∑ ∫"], batchSize: 2)
    }
}
