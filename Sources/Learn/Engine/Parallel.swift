import Foundation

/// Work splitting over the cores with `DispatchQueue.concurrentPerform`.
///
/// Work is cut into a fixed number of contiguous parts (`Parallel.parts`), so results — including
/// reductions done per part — depend only on that number, never on thread scheduling. This is what
/// makes training deterministic for a seed (and a given `threads` setting).
enum Parallel {
    /// Number of parts work is split into; set by the trainer from `Configuration.threads`.
    nonisolated(unsafe) static var parts: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body(part, range)` for `parts` contiguous slices of `0..<count` (fewer when `count` is
    /// small: no slice is shorter than `minimumPerPart`, except when `count` itself is).
    @inline(__always)
    static func forEachSlice(_ count: Int, minimumPerPart: Int = 1, parts requested: Int? = nil,
                             _ body: (_ part: Int, _ range: Range<Int>) -> Void) {
        let p = max(1, min(requested ?? parts, count / max(1, minimumPerPart)))
        if p <= 1 || count <= 1 {
            if count > 0 { body(0, 0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: p) { part in
            let lo = count * part / p, hi = count * (part + 1) / p
            if lo < hi { body(part, lo..<hi) }
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the cores in contiguous slices.
    @inline(__always)
    static func forEach(_ count: Int, minimumPerPart: Int = 1, _ body: (Int) -> Void) {
        forEachSlice(count, minimumPerPart: minimumPerPart) { _, range in for i in range { body(i) } }
    }
}
