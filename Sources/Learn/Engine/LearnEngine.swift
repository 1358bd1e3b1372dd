import COpenBLAS

/// Process-wide OpenBLAS tuning for Learn — an explicit opt-in for executables, never done by the library.
///
/// Learn (and RecDB, which uses it) never changes process-wide state on its own: opening a database, training,
/// encoding and serving leave OpenBLAS's kernel family, its thread count and the environment as the host set them.
/// Executables that own their process — rdbctl, the benchmarks, the test bundles — call `configureProcess()` once
/// at start-up. A host app that does not opt in gets the same results from a correct program, but loses speed:
/// - on CPUs newer than the installed OpenBLAS (0.3.21 does not know e.g. Emerald Rapids, family 6 model 207)
///   every BLAS product runs on the SSE3 "Prescott" fallback kernels: training and the text encoder are 3–5× slower
///   (numerics then match those kernels, not SkylakeX's: bit-identical results need the same kernel family);
/// - OpenBLAS keeps its default thread count, so the larger products Learn already runs one per core on its own
///   workers are threaded again by OpenBLAS: more CPU and context switches for no gain.
public enum LearnEngine {
    /// What `configureProcess()` did (kernel family before/after and OpenBLAS's thread count).
    public struct ProcessConfiguration: Sendable, CustomStringConvertible {
        public let kernels: OpenBLASCoreSelection.Outcome
        public let blasThreads: Int
        public var description: String { "\(kernels), \(blasThreads) OpenBLAS thread\(blasThreads == 1 ? "" : "s")" }
    }

    /// Opt-in process set-up for executables: switches OpenBLAS to kernels that match the CPU when its detection fell
    /// back to a generic family (`OpenBLASCoreSelection`, which re-initialises OpenBLAS and briefly sets
    /// OPENBLAS_CORETYPE), and sets OpenBLAS to ONE thread, because Learn parallelises over users and batches itself.
    ///
    /// Call it at the start of `main`, before any thread runs BLAS (re-initialising OpenBLAS under a running
    /// product is undefined); later calls return the first result and change nothing. The library never calls it.
    @discardableResult
    public static func configureProcess() -> ProcessConfiguration { processConfiguration }

    private static let processConfiguration: ProcessConfiguration = {
        let kernels = OpenBLASCoreSelection.ensureOptimizedKernels()
        openblas_set_num_threads(1)
        return ProcessConfiguration(kernels: kernels, blasThreads: Int(openblas_get_num_threads()))
    }()

    /// The former name of `configureProcess()`; it no longer runs implicitly from library entry points.
    @available(*, deprecated, renamed: "configureProcess()")
    public static func prepare() { configureProcess() }

    /// Name of the OpenBLAS kernel family in use (e.g. "SkylakeX"), for diagnostics. Changes nothing.
    public static var blasCoreName: String { BLAS.coreName }
}
