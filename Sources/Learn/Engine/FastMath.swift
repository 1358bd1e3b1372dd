import Foundation

/// Vectorised single-precision exp (Cephes `expf` polynomial, Cody–Waite range reduction), accurate to
/// about 2 ulp on [-87, 88]; inputs are clamped to that range. Used in the fused softmax where ~1.6 G
/// exponentials per Beauty epoch make `Foundation.exp` the bottleneck.
@inline(__always)
func fastExp(_ x0: SIMD8<Float>) -> SIMD8<Float> {
    var x = x0
    x.replace(with: -87, where: x .< -87)
    x.replace(with: 88, where: x .> 88)
    let magic = SIMD8<Float>(repeating: 12_582_912)  // 1.5·2²³: adding it rounds to an integer in the low bits
    let t = x * 1.442_695_040_888_963_4 + magic
    let n = t - magic
    var r = x - n * 0.693_359_375
    r = r + n * 2.121_944_4e-4
    var p = SIMD8<Float>(repeating: 1.987_569_150_0e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    p = p * (r * r) + r + 1
    let exponent = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    return unsafeBitCast(unsafeBitCast(p, to: SIMD8<Int32>.self) &+ (exponent &<< 23), to: SIMD8<Float>.self)
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// Vectorised erf (Abramowitz & Stegun 7.1.26), absolute error ≤ 1.5e-7: for GELU, where scalar
/// `erff` dominated BERT4Rec's feed-forward time.
@inline(__always)
func fastErf(_ z: SIMD8<Float>) -> SIMD8<Float> {
    let negative = z .< 0
    var a = z
    a.replace(with: -z, where: negative)
    let t = 1 / (1 + 0.327_591_1 * a)
    var poly = 1.061_405_429 * t - 1.453_152_027
    poly = poly * t + 1.421_413_741
    poly = poly * t - 0.284_496_736
    poly = poly * t + 0.254_829_592
    poly = poly * t
    var r = 1 - poly * fastExp(-(a * a))
    r.replace(with: -r, where: negative)
    return r
}
