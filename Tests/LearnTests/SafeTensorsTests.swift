// SafeTensors reader on files the test writes itself: F32, F16 and BF16 round trips, and every kind of damage
// (short file, absurd header length, bad JSON, inconsistent or out-of-file byte ranges) → a typed error naming
// the file and the tensor.

import Foundation
import XCTest
@testable import Learn

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Values exactly representable in binary16 and bfloat16 (so the round trip must be exact), incl. a subnormal half.
    let matrix: [Float] = [1, -2, 0.5, 0.375, -0.0, 65504, 6.103515625e-05, 5.9604645e-08]
    let vector: [Float] = [3, -1.5, 1024]

    func write(_ tensors: [SafeTensorsWriter.Tensor], metadata: [String: String] = [:], name: String = "w.safetensors") throws -> URL {
        let url = directory.appendingPathComponent(name)
        try SafeTensorsWriter.image(tensors, metadata: metadata).write(to: url)
        return url
    }

    func testFloat32RoundTripAndMetadata() throws {
        let url = try write([
            .init(name: "layer.weight", shape: [2, 4], values: matrix),
            .init(name: "layer.bias", shape: [3], values: vector),
        ], metadata: ["format": "pt"])
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(file.entries["layer.weight"]?.shape, [2, 4])
        XCTAssertEqual(file.entries["layer.weight"]?.dtype, .float32)
        XCTAssertEqual(try file.floats("layer.weight", expectedShape: [2, 4]), matrix)
        XCTAssertEqual(try file.floats("layer.bias"), vector)
        // The header is padded to 8 bytes, as the format recommends.
        let data = try Data(contentsOf: url)
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
        XCTAssertEqual(data.count, 8 + headerLength + 4 * (8 + 3))
    }

    func testFloat16AndBFloat16AreWidenedExactly() throws {
        let url = try write([
            .init(name: "half", shape: [8], values: matrix, dtype: .float16),
            .init(name: "brain", shape: [3], values: vector, dtype: .bfloat16),
        ])
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.entries["half"]?.dtype, .float16)
        XCTAssertEqual(file.entries["half"]?.dataRange.count, 16)
        XCTAssertEqual(try file.floats("half"), matrix)
        XCTAssertEqual(try file.floats("brain"), vector)
    }

    func testHalfConversionKnownBitPatterns() {
        // IEEE 754 binary16 reference encodings.
        let cases: [(UInt16, Float)] = [(0x3C00, 1), (0xC000, -2), (0x7BFF, 65504), (0x0400, 6.103515625e-05),
                                        (0x0001, 5.9604645e-08), (0x3555, 0.333251953125), (0x8000, -0.0)]
        for (bits, value) in cases {
            XCTAssertEqual(SafeTensorsFile.floatFromHalfBits(bits), value, "0x\(String(bits, radix: 16))")
            XCTAssertEqual(SafeTensorsFile.halfBits(from: value), bits, "\(value)")
        }
        XCTAssertEqual(SafeTensorsFile.floatFromHalfBits(0x7C00), .infinity)
        XCTAssertTrue(SafeTensorsFile.floatFromHalfBits(0x7E00).isNaN)
        XCTAssertEqual(SafeTensorsFile.halfBits(from: 1e6), 0x7C00, "overflow → +inf")
        XCTAssertEqual(SafeTensorsFile.halfBits(from: 1 + 1.0 / 2048), 0x3C00, "halfway rounds to even")
        XCTAssertEqual(SafeTensorsFile.halfBits(from: 1 + 3.0 / 2048), 0x3C02, "halfway rounds to even (up)")
    }

    func testMissingTensorAndShapeMismatch() throws {
        let url = try write([.init(name: "a", shape: [2, 4], values: matrix)])
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertThrowsError(try file.floats("b")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .missingTensor(file: url.path, name: "b"))
        }
        XCTAssertThrowsError(try file.floats("a", expectedShape: [4, 2])) { error in
            XCTAssertEqual(error as? SafeTensorsError, .shapeMismatch(file: url.path, name: "a", expected: [4, 2], actual: [2, 4]))
            XCTAssertTrue("\(error)".contains("'a'") && "\(error)".contains(url.path))
        }
    }

    func testTruncatedFileNamesTheTensor() throws {
        let url = try write([.init(name: "first", shape: [3], values: vector), .init(name: "second", shape: [2, 4], values: matrix)])
        let data = try Data(contentsOf: url)
        let cut = directory.appendingPathComponent("cut.safetensors")
        try data.prefix(data.count - 5).write(to: cut)
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: cut)) { error in
            guard case let .truncatedTensor(file, name, _)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, cut.path)
            XCTAssertEqual(name, "second")
        }
    }

    func testCorruptHeadersAreReported() throws {
        func header(_ json: String, payload: Int = 0, declaredLength: UInt64? = nil) -> Data {
            var data = Data()
            withUnsafeBytes(of: (declaredLength ?? UInt64(json.utf8.count)).littleEndian) { data.append(contentsOf: $0) }
            data.append(Data(json.utf8))
            data.append(Data(repeating: 0, count: payload))
            return data
        }
        func expectBadHeader(_ data: Data, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try SafeTensorsFile(data: data, fileName: "x.safetensors"), line: line) { error in
                guard case let .badHeader(file, reason)? = error as? SafeTensorsError else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(file, "x.safetensors", line: line)
                XCTAssertTrue(reason.contains(fragment), "reason '\(reason)' lacks '\(fragment)'", line: line)
            }
        }
        expectBadHeader(Data([1, 2, 3]), "shorter than the 8-byte")
        expectBadHeader(header("{}", declaredLength: 1 << 40), "exceeds the file")
        expectBadHeader(header("{\"a\": {\"dtype\": \"F32\""), "not valid JSON")
        expectBadHeader(header("[1, 2]"), "not a JSON object")
        expectBadHeader(header("{\"a\": {\"dtype\": \"F99\", \"shape\": [1], \"data_offsets\": [0, 4]}}", payload: 4), "unknown dtype 'F99'")
        expectBadHeader(header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", payload: 4), "no valid shape")
        expectBadHeader(header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", payload: 4), "no valid data_offsets")
        expectBadHeader(header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", payload: 4), "no valid data_offsets")
        // Byte range disagreeing with dtype × shape is a tensor error.
        XCTAssertThrowsError(try SafeTensorsFile(data: header("{\"a\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 4]}}", payload: 8), fileName: "x")) { error in
            guard case let .truncatedTensor(_, name, reason)? = error as? SafeTensorsError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "a")
            XCTAssertTrue(reason.contains("needs 6"), reason)
        }
        // Integer tensors parse but cannot be read as Float.
        let ints = try SafeTensorsFile(data: header("{\"ids\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", payload: 8), fileName: "x")
        XCTAssertThrowsError(try ints.floats("ids")) { error in
            XCTAssertEqual(error as? SafeTensorsError, .unsupportedDType(file: "x", name: "ids", dtype: "I64"))
        }
    }

    func testUnreadableFile() {
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: directory.appendingPathComponent("absent.safetensors"))) { error in
            guard case .unreadable? = error as? SafeTensorsError else { return XCTFail("\(error)") }
        }
    }
}
