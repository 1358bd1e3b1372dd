import Learn

/// What `Database.configureProcess()` did: OpenBLAS's kernel family before/after and its thread count.
public typealias ProcessConfiguration = LearnEngine.ProcessConfiguration

extension Database {
    /// Opt-in, process-wide tuning for programs that own their process (rdbctl, benchmarks, test bundles): picks
    /// OpenBLAS kernels that match the CPU when OpenBLAS 0.3.21's own detection fell back to its generic SSE3 ones,
    /// and sets OpenBLAS to one thread, since RecDB parallelises over users and batches itself. Call it once at the
    /// start of `main`, before any thread uses BLAS; later calls change nothing.
    ///
    /// RecDB never does this on its own (opening a database, training, embedding and serving leave process-wide
    /// state alone). A host app that skips it gets correct results but, on CPUs newer than its OpenBLAS, 3–5× slower
    /// training and embedding, and OpenBLAS threads on top of RecDB's own (oversubscription). See `LearnEngine`.
    @discardableResult
    public static func configureProcess() -> ProcessConfiguration { LearnEngine.configureProcess() }
}
