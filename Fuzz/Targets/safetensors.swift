// SafeTensors headers and tensors: parse, then convert every entry to Float.
import Foundation
import Learn

func fuzzOne(_ bytes: [UInt8]) {
    guard let file = try? SafeTensorsFile(data: Data(bytes), fileName: "fuzz.safetensors") else { return }
    for name in file.entries.keys.sorted() { _ = try? file.floats(name) }
}
