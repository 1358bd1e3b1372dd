// Runtime choice of OpenBLAS's kernel family on CPUs the installed OpenBLAS does not recognise.
//
// Debian's OpenBLAS 0.3.21 is built with DYNAMIC_ARCH: at load time it maps the CPUID family/model to a kernel
// family. CPUs newer than the library (e.g. this machine: Intel family 6 model 207, Emerald Rapids) are unknown
// to it, and it silently falls back to "Prescott" — SSE3 kernels from 2004. Measured here: the MiniLM encoder runs
// 5× slower with Prescott than with the SkylakeX (AVX-512) kernels the CPU supports. The library honours the
// environment variable OPENBLAS_CORETYPE, but only while it initialises, i.e. before `main`. Its exported
// `gotoblas_dynamic_quit` / `gotoblas_dynamic_init` pair re-runs that initialisation, so we can pick the right
// family from the CPU's feature flags once, early, in-process.

import COpenBLAS
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes OpenBLAS use kernels that match the CPU when its own detection fell back to a generic family.
///
/// Thread safety: `ensureOptimizedKernels()` runs its work once per process (later calls return the cached
/// result). It must not run while another thread is inside an OpenBLAS call, so call it early (before training or
/// encoding threads start). It changes process-wide state (OpenBLAS's kernels, the environment for a moment), so the
/// library never calls it: executables opt in through `LearnEngine.configureProcess()`.
public enum OpenBLASCoreSelection {
    /// The kernel family OpenBLAS currently uses (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// What `ensureOptimizedKernels()` did.
    public struct Outcome: Sendable, Equatable, CustomStringConvertible {
        /// Kernel family before and after.
        public var before: String, after: String
        /// Why nothing changed, when nothing did.
        public var note: String
        public var description: String { before == after ? "OpenBLAS core \(after) (\(note))" : "OpenBLAS core \(before) → \(after)" }
    }

    /// Switches OpenBLAS from a generic fallback family (Prescott, Core2, Nehalem, …) to SkylakeX, Haswell or
    /// SandyBridge according to the CPU's flags in /proc/cpuinfo. Does nothing when OPENBLAS_CORETYPE is set (the
    /// user decided), when detection already found a modern family, or when the library does not export the
    /// re-initialisation entry points (non-DYNAMIC_ARCH builds).
    @discardableResult
    public static func ensureOptimizedKernels() -> Outcome { outcome }

    private static let outcome: Outcome = select()

    /// Families OpenBLAS falls back to for unknown CPUs, or that predate AVX.
    static let genericFamilies: Set<String> = ["prescott", "katmai", "coppermine", "northwood", "banias", "core2",
                                               "penryn", "dunnington", "nehalem", "atom", "unknown"]

    /// The best kernel family OpenBLAS 0.3.x ships for a CPU with these flags, or nil for none better than SSE.
    static func family(forCPUFlags flags: Set<String>) -> String? {
        if flags.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        if flags.contains("avx") { return "SandyBridge" }
        return nil
    }

    private static func select() -> Outcome {
        let before = coreName
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil {
            return Outcome(before: before, after: before, note: "OPENBLAS_CORETYPE set by the environment")
        }
        guard genericFamilies.contains(before.lowercased()) else {
            return Outcome(before: before, after: before, note: "detected by OpenBLAS")
        }
        guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let target = family(forCPUFlags: Set(flagsLine.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])) else {
            return Outcome(before: before, after: before, note: "no better kernel family for this CPU")
        }
        #if canImport(Glibc)
        guard let handle = dlopen(nil, RTLD_NOW),
              let quitSymbol = dlsym(handle, "gotoblas_dynamic_quit"),
              let initSymbol = dlsym(handle, "gotoblas_dynamic_init") else {
            return Outcome(before: before, after: before, note: "OpenBLAS is not a DYNAMIC_ARCH build")
        }
        typealias Entry = @convention(c) () -> Void
        let quit = unsafeBitCast(quitSymbol, to: Entry.self), initialize = unsafeBitCast(initSymbol, to: Entry.self)
        // OPENBLAS_CORETYPE is read only inside gotoblas_dynamic_init; unset it again so child processes are unaffected.
        setenv("OPENBLAS_CORETYPE", target, 1)
        quit()
        initialize()
        unsetenv("OPENBLAS_CORETYPE")
        let after = coreName
        return Outcome(before: before, after: after, note: after.lowercased() == target.lowercased() ? "switched" : "switch to \(target) failed")
        #else
        return Outcome(before: before, after: before, note: "dynamic re-initialisation only on Linux")
        #endif
    }
}
