/// A dense, row-major float32 tensor with value semantics: the exchange format of Learn's public API
/// (exported model parameters, item vectors). Hot loops never use it; they run over `Buffer`s.
public struct Tensor: Codable, Equatable, Sendable {
    /// Extent of each dimension, outermost first (e.g. `[rows, columns]`).
    public var shape: [Int]
    /// `shape.reduce(1, *)` values, row-major.
    public var values: [Float]

    /// Creates a tensor; `values.count` must equal the product of `shape`.
    public init(shape: [Int], values: [Float]) {
        // Unreachable from input: the decoders (TensorCodec, SafeTensors) check shapes against the data first.
        precondition(shape.reduce(1, *) == values.count, "Tensor: \(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) { self.init(shape: shape, values: [Float](repeating: 0, count: shape.reduce(1, *))) }

    /// Number of elements.
    public var count: Int { values.count }
}

/// A fixed-capacity, manually managed float buffer: stable address, no copy-on-write, no bounds checks.
/// Owned by exactly one workspace or parameter; freed on deinit. Not thread-safe by itself: callers
/// partition its index range between threads.
final class Buffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ capacity: Int) {
        self.capacity = max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
        pointer.initialize(repeating: 0, count: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// Grows (never shrinks) to at least `count` elements; contents are NOT preserved when it grows.
    /// Growth is by at least half the old capacity: training batches differ in size, and growing to each new
    /// largest one exactly reallocated (and page-faulted) a workspace many times an epoch.
    @inline(__always)
    func reserve(_ count: Int) {
        if count <= capacity { return }
        grow(to: count)
    }

    private func grow(to count: Int) {
        pointer.deallocate()
        capacity = capacity > 1 ? max(count, capacity + capacity / 2) : count
        pointer = .allocate(capacity: capacity)
        pointer.initialize(repeating: 0, count: capacity)
    }

    @inline(__always) func zero(_ count: Int) { pointer.update(repeating: 0, count: count) }
    var p: UnsafeMutablePointer<Float> { pointer }
}

/// A trainable parameter: value, gradient and the two AdamW moment buffers, all of `count` floats.
final class Parameter {
    let name: String
    private(set) var shape: [Int]
    private(set) var count: Int
    private(set) var value: Buffer
    private(set) var grad: Buffer
    private(set) var moment1: Buffer
    private(set) var moment2: Buffer

    init(_ name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
        count = shape.reduce(1, *)
        value = Buffer(count); grad = Buffer(count); moment1 = Buffer(count); moment2 = Buffer(count)
    }

    /// Copies values from a tensor of the same shape.
    func load(_ t: Tensor) {
        // Unreachable from input: `importParameters` compares shapes first and throws `shapeMismatch`.
        precondition(t.shape == shape, "parameter \(name): shape \(t.shape) ≠ \(shape)")
        t.values.withUnsafeBufferPointer { value.p.update(from: $0.baseAddress!, count: count) }
    }

    /// The current value as a tensor (a copy).
    var tensor: Tensor { Tensor(shape: shape, values: Array(UnsafeBufferPointer(start: value.p, count: count))) }

    /// Grows the leading dimension to `rows` (for warm starts on a larger catalogue). Old rows are kept,
    /// new rows are filled by `fill(row, pointer-to-row)`; optimiser state restarts from zero.
    func growRows(to rows: Int, fill: (Int, UnsafeMutablePointer<Float>) -> Void) {
        // Unreachable from input: only `growCatalogue` calls this, and catalogues only grow.
        precondition(shape.count == 2 && rows >= shape[0])
        let width = shape[1], old = count
        let newValue = Buffer(rows * width)
        newValue.p.update(from: value.p, count: old)
        for r in shape[0]..<rows { fill(r, newValue.p + r * width) }
        shape[0] = rows; count = rows * width
        value = newValue; grad = Buffer(count); moment1 = Buffer(count); moment2 = Buffer(count)
    }
}
