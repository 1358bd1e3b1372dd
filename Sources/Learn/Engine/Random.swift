import CKernels
import Foundation

/// Random numbers for training: a sequential generator for shuffling and masking decisions, and a
/// counter-based hash for dropout masks (any element can be generated independently, so masks are
/// identical however the work is split across threads).

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
@inline(__always)
func splitMix64(_ z0: UInt64) -> UInt64 {
    var z = z0 &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// xoshiro256** (Blackman & Vigna 2018), seeded through SplitMix64. Not thread-safe (a value type).
public struct Xoshiro256: RandomNumberGenerator {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var z = seed
        func next() -> UInt64 { z = z &+ 0x9E37_79B9_7F4A_7C15; return splitMix64(z) }
        s0 = next(); s1 = next(); s2 = next(); s3 = next()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform Float in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func nextUniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Standard normal sample (Box–Muller).
    public mutating func nextNormal() -> Float {
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}


/// Inverted dropout masks from a counter-based generator: element `i` of the mask drawn with `key` is a
/// pure function of `(key, i)`. Four 16-bit uniforms come out of one 64-bit hash; an element is kept
/// when its uniform is ≥ `p·65536` (so the drop probability is `p` to within 2⁻¹⁶).
enum DropoutMask {
    /// Fills `mask[0..<count]` with 0 (dropped) or `1/(1-p)` (kept).
    static func fill(_ mask: UnsafeMutablePointer<Float>, count: Int, p: Float, key: UInt64) {
        // Unreachable from input: `ModelConfiguration.validate` keeps dropout and mask probability in [0, 1).
        precondition(p >= 0 && p < 1)
        let threshold = UInt64((p * 65536).rounded())
        let scale = 1 / (1 - p)
        // Word w = SplitMix64(key + w·0xD1B54A32D192ED03) decides floats 4w..<4w+4 by its 16-bit parts
        // (kept when ≥ threshold); in C so the AVX-512 path can hash eight words at once (same bits).
        Parallel.forEachSlice((count + 3) / 4, minimumPerPart: 4096) { _, words in
            recdb_dropout_fill(CPUKernels.best, mask, count, words.lowerBound, words.upperBound, threshold, scale, key)
        }
    }
}
