import Foundation
import Learn

/// Fixtures shared by the test targets (a regular target that only test targets depend on).
public enum TinyEncoder {
    /// Writes a tiny random BERT sentence-transformers folder (hidden 8, 1 layer, mean pooling, normalised).
    public static func write(in directory: URL) throws -> String {
        let folder = directory.appendingPathComponent("tiny-bert")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "lip", "stick", "##s", "gloss", "hair", "oil", "new", "item", "."]
        let h = 8, inner = 16, v = vocabulary.count, positions = 32
        var state: UInt64 = 42
        func random(_ count: Int, scale: Float, offset: Float = 0) -> [Float] {
            (0..<count).map { _ in
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return offset + scale * (Float(state % 2_000_001) / 1_000_000 - 1)
            }
        }
        var tensors: [(String, [Int], [Float])] = [
            ("embeddings.word_embeddings.weight", [v, h], random(v * h, scale: 1)),
            ("embeddings.position_embeddings.weight", [positions, h], random(positions * h, scale: 0.3)),
            ("embeddings.token_type_embeddings.weight", [2, h], random(2 * h, scale: 0.1)),
            ("embeddings.LayerNorm.weight", [h], random(h, scale: 0.1, offset: 1)),
            ("embeddings.LayerNorm.bias", [h], random(h, scale: 0.1)),
        ]
        let p = "encoder.layer.0."
        for part in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            tensors += [(p + part + ".weight", [h, h], random(h * h, scale: 0.4)), (p + part + ".bias", [h], random(h, scale: 0.1))]
        }
        tensors += [(p + "intermediate.dense.weight", [inner, h], random(inner * h, scale: 0.4)), (p + "intermediate.dense.bias", [inner], random(inner, scale: 0.1)),
                    (p + "output.dense.weight", [h, inner], random(h * inner, scale: 0.3)), (p + "output.dense.bias", [h], random(h, scale: 0.1))]
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            tensors += [(p + norm + ".weight", [h], random(h, scale: 0.1, offset: 1)), (p + norm + ".bias", [h], random(h, scale: 0.1))]
        }
        try SafeTensorsWriter.image(tensors.map { SafeTensorsWriter.Tensor(name: $0.0, shape: $0.1, values: $0.2) })
            .write(to: folder.appendingPathComponent("model.safetensors"))
        func json(_ object: Any, _ file: String) throws {
            try JSONSerialization.data(withJSONObject: object).write(to: folder.appendingPathComponent(file))
        }
        try json(["hidden_size": h, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": inner,
                  "max_position_embeddings": positions, "type_vocab_size": 2, "vocab_size": v, "layer_norm_eps": 1e-12,
                  "hidden_act": "gelu", "model_type": "bert"] as [String: Any], "config.json")
        try (vocabulary.joined(separator: "\n") + "\n").write(to: folder.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        try json(["do_lower_case": true, "model_max_length": 512] as [String: Any], "tokenizer_config.json")
        try json(["max_seq_length": 16] as [String: Any], "sentence_bert_config.json")
        try json([["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
                  ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"],
                  ["idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"]], "modules.json")
        try json(["word_embedding_dimension": h, "pooling_mode_mean_tokens": true], "1_Pooling/config.json")
        return folder.path
    }

}
