import Foundation

/// Work splitting over the cores with `DispatchQueue.concurrentPerform`.
///
/// Work is cut into a fixed number of contiguous parts (`Parallel.parts`), so results — including
/// reductions done per part — depend only on that number, never on thread scheduling. This is what
/// makes training deterministic for a seed (and a given `threads` setting).
enum Parallel {
    /// Number of parts work is split into. A task-local value, not a global: the trainer binds it to
    /// `Configuration.threads` for the duration of one `Trainer.train` call (`$parts.withValue`), so a
    /// training run on one thread and serving on another never read or write a shared setting.
    /// Outside such a binding it is the number of active processors.
    @TaskLocal static var parts: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body(part, range)` for `parts` contiguous slices of `0..<count` (fewer when `count` is
    /// small: no slice is shorter than `minimumPerPart`, except when `count` itself is).
    @inline(__always)
    static func forEachSlice(_ count: Int, minimumPerPart: Int = 1, parts requested: Int? = nil,
                             _ body: (_ part: Int, _ range: Range<Int>) -> Void) {
        let bound = parts
        let p = max(1, min(requested ?? bound, count / max(1, minimumPerPart)))
        if p <= 1 || count <= 1 {
            if count > 0 { body(0, 0..<count) }
            return
        }
        // Shared by the parts on purpose: concurrentPerform returns only after every part has run, and each
        // part gets a disjoint range (callers write only inside their own range or their own `part` slot).
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: p) { part in
            let lo = count * part / p, hi = count * (part + 1) / p
            // The pool threads do not inherit the caller's binding: re-bind so nested work splits the same way.
            if lo < hi { $parts.withValue(bound) { body(part, lo..<hi) } }
        }
    }

    /// Parallel accumulation into destinations that many work items share (item rows, positions), with every
    /// destination's terms added in work order, i.e. the bits of the serial loop: each of up to `parts`
    /// owners (one per `minimumPerOwner` items of `work`) runs `body` over all the work and adds only into
    /// the destinations `owns(id)` gives it (id mod owners).
    @inline(__always)
    static func byOwner(work: Int, minimumPerOwner: Int, _ body: (_ owns: (Int) -> Bool) -> Void) {
        let owners = max(1, min(parts, work / max(1, minimumPerOwner)))
        forEachSlice(owners, parts: owners) { _, mine in body { mine.contains($0 % owners) } }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the cores in contiguous slices.
    @inline(__always)
    static func forEach(_ count: Int, minimumPerPart: Int = 1, _ body: (Int) -> Void) {
        forEachSlice(count, minimumPerPart: minimumPerPart) { _, range in for i in range { body(i) } }
    }
}
