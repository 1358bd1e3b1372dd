import CKernels

/// The C training kernels (`CKernels`: the sampled softmax's rows, dropout masks, AdamW, GELU's gradient) run at the best
/// instruction-set level this CPU and OS support: AVX-512, AVX2 or portable. Every level gives the same
/// bits (the tests check each one the machine has), so a model trains identically on any x86-64 CPU.
enum CPUKernels {
    static let best: Int32 = recdb_kernels_best_level()

    /// The level's name, for benchmark and test output.
    static func name(_ level: Int32) -> String {
        switch level {
        case Int32(RECDB_KERNELS_AVX512): "avx512"
        case Int32(RECDB_KERNELS_AVX2): "avx2"
        default: "portable"
        }
    }
}
