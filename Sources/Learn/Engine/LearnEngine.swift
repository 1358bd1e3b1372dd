/// Process-wide setup of the Learn engine.
public enum LearnEngine {
    /// Prepares OpenBLAS for Learn: picks fast kernels when OpenBLAS's CPU detection fell back to the
    /// generic ones (see `BLAS.selectKernels`), and sets OpenBLAS to ONE thread because Learn parallelises
    /// over the batch itself. Idempotent; every Learn entry point calls it, but a host that also uses
    /// OpenBLAS directly should call it once at start-up, before its first BLAS call.
    public static func prepare() { BLAS.useSingleThreadedKernels() }

    /// Name of the OpenBLAS kernel family in use (e.g. "SkylakeX"), for diagnostics.
    public static var blasCoreName: String { prepare(); return BLAS.coreName }
}
