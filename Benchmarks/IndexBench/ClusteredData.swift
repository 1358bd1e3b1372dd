/// The generated data set for the efSearch curve: clustered vectors of low intrinsic dimension.
///
/// Independent uniform or Gaussian vectors are HNSW's known worst case (every point is nearly equidistant
/// from every other), which says little about real embeddings. This generator draws a Gaussian mixture whose
/// clusters are low-rank:
///   - `clusters` centres c_j ~ N(0, I_d);
///   - per cluster, a random basis B_j ∈ R^{d×r} with entries ~ N(0, 1/r);
///   - a point of cluster j (chosen uniformly) is x = c_j + spread · B_j z + noise · e, z ~ N(0, I_r), e ~ N(0, I_d).
/// Defaults: d = 128, 1,000 clusters, rank r = 8, spread 0.5, noise 0.05; seeded SplitMix64 + Box–Muller.
struct ClusteredData {
    struct Parameters: CustomStringConvertible {
        var dimension = 128
        var clusters = 1000
        var rank = 8
        var spread: Float = 0.5
        var noise: Float = 0.05
        var seed: UInt64 = 20_261_129

        var description: String {
            "Gaussian mixture, \(clusters) clusters of rank \(rank) in \(dimension)-d (x = c_j + \(spread)·B_j·z + \(noise)·e), seed \(seed)"
        }
    }

    let parameters: Parameters
    private let centres: [Float]
    private let bases: [Float]
    private var rng: SplitMix

    init(_ parameters: Parameters) {
        self.parameters = parameters
        rng = SplitMix(seed: parameters.seed)
        let d = parameters.dimension, r = parameters.rank
        var centres = [Float](repeating: 0, count: parameters.clusters * d)
        for i in centres.indices { centres[i] = rng.gaussian() }
        let scale = 1 / Float(r).squareRoot()
        var bases = [Float](repeating: 0, count: parameters.clusters * d * r)
        for i in bases.indices { bases[i] = rng.gaussian() * scale }
        self.centres = centres
        self.bases = bases
    }

    /// `n` new points, row-major.
    mutating func sample(_ n: Int) -> [Float] {
        let d = parameters.dimension, r = parameters.rank
        var out = [Float](repeating: 0, count: n * d)
        var z = [Float](repeating: 0, count: r)
        for i in 0..<n {
            let j = Int(rng.next() % UInt64(parameters.clusters))
            for t in 0..<r { z[t] = rng.gaussian() * parameters.spread }
            for a in 0..<d {
                var v = centres[j * d + a] + parameters.noise * rng.gaussian()
                let row = (j * d + a) * r
                for t in 0..<r { v += bases[row + t] * z[t] }
                out[i * d + a] = v
            }
        }
        return out
    }
}

struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func gaussian() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
