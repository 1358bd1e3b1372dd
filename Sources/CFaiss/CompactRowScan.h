// CompactRowScan.h — an int8 copy of a flat index's rows, scanned to find the *exact* float32 top-k.
//
// Why: a recommendation scores the whole model-space catalogue (Beauty: 12,101 × 64 floats = 3.1 MB). With
// `cblas_sgemv` that scan was 44% of a recommendation: memory-bound, the float matrix does not fit a core's L2
// (2 MB here). Measured alternatives on the same rows (hot cache, one core): float16 with `vcvtph2ps` 39 µs,
// bfloat16 with `vdpbf16ps` 28 µs, int8 with AVX512-VNNI `vpdpbusd` (64 multiply-adds per instruction, 0.8 MB)
// 11 µs — so int8.
//
// Exactness comes from error bounds, not hope: every approximate score s̃ᵢ has a rigorous bound eᵢ on |s̃ᵢ − sᵢ|
// (see `errorCoefficients`), so a row can only be in the float32 top-k if s̃ᵢ + eᵢ reaches the k-th best *lower*
// bound s̃ⱼ − eⱼ; those few rows (≈ k on Beauty) are re-scored from the float rows. The result is the top-k of a
// float32 scan (ties and the last bit of a score follow the float kernel's summation order).
//
// Quantisation: row i is sᵢ·cᵢ with sᵢ = max|xᵢⱼ|/127 and cᵢⱼ = round(xᵢⱼ/sᵢ) ∈ [−127, 127]; the query is
// t·r with r ∈ [−127, 127], fed to `vpdpbusd` as unsigned bytes r + 128, so
// Σⱼ rⱼcᵢⱼ = Σⱼ (rⱼ + 128)cᵢⱼ − 128·Σⱼ cᵢⱼ, the last sum stored per row.
//
// Layout: blocks of 16 rows; inside a block, dimension quads (4p … 4p+3) are major: quad p holds 16 rows × 4
// bytes = 64 bytes, row r's four values adjacent — one `vpdpbusd` with the query quad broadcast advances 16 rows
// by four dimensions, with no horizontal sums. Dimensions are padded to a multiple of 4 with zeros.
//
// Private to CFaiss. CPUs without AVX512-VNNI keep the float path (`usable` stays false).
#ifndef CFAISS_COMPACT_ROW_SCAN_H
#define CFAISS_COMPACT_ROW_SCAN_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CFAISS_COMPACT_X86 1
#endif

namespace cfaiss {

constexpr size_t kCompactBlockRows = 16;

inline bool cpuHasAVX512VNNI() {
#ifdef CFAISS_COMPACT_X86
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
    return has;
#else
    return false;
#endif
}

/// What the bound needs per row, stored per 16-row block so one block's values sit in five cache lines.
struct CompactBlockMeta {
    int32_t sums[kCompactBlockRows];      // Σⱼ cᵢⱼ
    float scales[kCompactBlockRows];      // sᵢ
    float errors[kCompactBlockRows];      // max |xᵢⱼ − sᵢcᵢⱼ| (measured, rounded up)
    float scaledL1[kCompactBlockRows];    // sᵢ·Σ|cᵢⱼ| (rounded up)
    float norms[kCompactBlockRows];       // ‖xᵢ‖₂ (rounded up)
};

/// Per-query quantisation and bound coefficients (see `CompactRows::prepare`).
struct CompactQuery {
    std::vector<uint32_t> quads;  // r + 128 as bytes, four to a u32
    float scale = 0;              // t
    float alpha = 0, beta = 0, gamma = 0, epsilon = 0;
};

#ifdef CFAISS_COMPACT_X86
/// Approximate scores s̃ᵢ = t·sᵢ·(Σⱼ(rⱼ + 128)cᵢⱼ − 128·Σⱼcᵢⱼ) and bounds eᵢ = α·errᵢ + β·l1ᵢ + γ·‖xᵢ‖ + ε of one
/// block, from its `vpdpbusd` accumulator.
__attribute__((target("avx512f"))) inline void compactBlockScores(__m512i dots, const CompactBlockMeta& meta, const CompactQuery& q,
                                                                  __m512& scores, __m512& bounds) {
    const __m512i centred = _mm512_sub_epi32(dots, _mm512_slli_epi32(_mm512_loadu_si512(meta.sums), 7));
    scores = _mm512_mul_ps(_mm512_cvtepi32_ps(centred), _mm512_mul_ps(_mm512_set1_ps(q.scale), _mm512_loadu_ps(meta.scales)));
    __m512 e = _mm512_fmadd_ps(_mm512_set1_ps(q.alpha), _mm512_loadu_ps(meta.errors), _mm512_set1_ps(q.epsilon));
    e = _mm512_fmadd_ps(_mm512_set1_ps(q.beta), _mm512_loadu_ps(meta.scaledL1), e);
    bounds = _mm512_fmadd_ps(_mm512_set1_ps(q.gamma), _mm512_loadu_ps(meta.norms), e);
}

/// Turns one block's accumulator into scores and bounds and visits the rows whose upper bound reaches `threshold`.
template <class Visit>
__attribute__((target("avx512f"))) inline void compactFinishBlock(size_t block, __m512i dots, const CompactBlockMeta* meta, size_t rows,
                                                                  const CompactQuery& q, float& threshold, Visit& visit) {
    __m512 scores, bounds;
    compactBlockScores(dots, meta[block], q, scores, bounds);
    __mmask16 reach = _mm512_cmp_ps_mask(_mm512_add_ps(scores, bounds), _mm512_set1_ps(threshold), _CMP_GE_OQ);
    if (!reach) return;
    alignas(64) float scoreLanes[kCompactBlockRows], boundLanes[kCompactBlockRows];
    _mm512_store_ps(scoreLanes, scores);
    _mm512_store_ps(boundLanes, bounds);
    const size_t first = block * kCompactBlockRows;
    while (reach) {
        const unsigned lane = unsigned(__builtin_ctz(reach));
        reach &= __mmask16(reach - 1);
        const size_t row = first + lane;
        if (row >= rows) break;
        const float s = scoreLanes[lane], e = boundLanes[lane];
        if (s + e >= threshold) visit(row, s, e);  // `visit` may have raised the threshold meanwhile
    }
}

/// Scores every block and calls `visit(row, s̃, e)` for each row whose upper bound s̃ + e reaches `threshold`
/// (which `visit` may raise). Rows are visited in order; padding rows (≥ `rows`) never are.
template <class Visit>
__attribute__((target("avx512f,avx512vnni"))) inline void compactScanVNNI(const int8_t* blocks, const CompactBlockMeta* meta,
                                                                          size_t rows, size_t quads, const CompactQuery& q,
                                                                          float& threshold, Visit&& visit) {
    const size_t blockCount = (rows + kCompactBlockRows - 1) / kCompactBlockRows;
    const size_t stride = quads * kCompactBlockRows * 4;
    const uint32_t* queryQuads = q.quads.data();
    size_t b = 0;
    // Four blocks at a time: four independent accumulation chains hide the instruction latency.
    for (; b + 4 <= blockCount; b += 4) {
        const int8_t* p = blocks + b * stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512(), a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
        for (size_t j = 0; j < quads; j++) {
            const __m512i qv = _mm512_set1_epi32(int(queryQuads[j]));
            const int8_t* row = p + j * kCompactBlockRows * 4;
            a0 = _mm512_dpbusd_epi32(a0, qv, _mm512_loadu_si512(row));
            a1 = _mm512_dpbusd_epi32(a1, qv, _mm512_loadu_si512(row + stride));
            a2 = _mm512_dpbusd_epi32(a2, qv, _mm512_loadu_si512(row + 2 * stride));
            a3 = _mm512_dpbusd_epi32(a3, qv, _mm512_loadu_si512(row + 3 * stride));
        }
        compactFinishBlock(b, a0, meta, rows, q, threshold, visit);
        compactFinishBlock(b + 1, a1, meta, rows, q, threshold, visit);
        compactFinishBlock(b + 2, a2, meta, rows, q, threshold, visit);
        compactFinishBlock(b + 3, a3, meta, rows, q, threshold, visit);
    }
    for (; b < blockCount; b++) {
        const int8_t* p = blocks + b * stride;
        __m512i a0 = _mm512_setzero_si512();
        for (size_t j = 0; j < quads; j++)
            a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(int(queryQuads[j])), _mm512_loadu_si512(p + j * kCompactBlockRows * 4));
        compactFinishBlock(b, a0, meta, rows, q, threshold, visit);
    }
}

/// `compactScanVNNI` for G queries at once: each block's row bytes are loaded once and multiplied with every
/// query's quads (G independent accumulation chains), so the catalogue streams through the cache once for the
/// group instead of once per query. Each query keeps its own threshold; `visit(g, row, s̃, e)` sees query g's
/// rows in row order, as `compactScanVNNI` shows them to a single query — the same candidates and thresholds.
template <int G, class Visit>
__attribute__((target("avx512f,avx512vnni"))) inline void compactScanVNNIGroup(const int8_t* blocks, const CompactBlockMeta* meta,
                                                                               size_t rows, size_t quads, const CompactQuery* const* qs,
                                                                               float* thresholds, Visit&& visit) {
    const size_t blockCount = (rows + kCompactBlockRows - 1) / kCompactBlockRows;
    const size_t stride = quads * kCompactBlockRows * 4;
    const uint32_t* queryQuads[G];
    for (int g = 0; g < G; g++) queryQuads[g] = qs[g]->quads.data();
    for (size_t b = 0; b < blockCount; b++) {
        const int8_t* p = blocks + b * stride;
        __m512i acc[G];
        for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_si512();
        for (size_t j = 0; j < quads; j++) {
            const __m512i rowBytes = _mm512_loadu_si512(p + j * kCompactBlockRows * 4);
            for (int g = 0; g < G; g++) acc[g] = _mm512_dpbusd_epi32(acc[g], _mm512_set1_epi32(int(queryQuads[g][j])), rowBytes);
        }
        for (int g = 0; g < G; g++) {
            auto visitQuery = [&](size_t row, float s, float e) { visit(g, row, s, e); };
            compactFinishBlock(b, acc[g], meta, rows, *qs[g], thresholds[g], visitQuery);
        }
    }
}
#endif

/// The int8 shadow of a flat index's rows, kept in step with the float rows by the index's mutating calls
/// (which run under the wrapper's write lock; searches only read it).
struct CompactRows {
    std::vector<int8_t> blocks;          // ⌈rows / 16⌉ blocks of quads × 16 rows × 4 bytes; padding is zero
    std::vector<CompactBlockMeta> meta;  // one per block; padding rows are zero
    size_t rows = 0;
    size_t dimension = 0;
    size_t quads = 0;
    bool usable = false;

    void reset(size_t d) {
        blocks.clear();
        meta.clear();
        rows = 0;
        dimension = d;
        quads = (d + 3) / 4;
        usable = d > 0 && cpuHasAVX512VNNI();
    }

    /// Quantises float rows [rows, total) of `xb` (row-major, `dimension` wide) and appends them. A non-finite
    /// value turns the copy off until the next reset (searches keep the float path).
    void append(const float* xb, size_t total) {
        if (!usable || total <= rows) return;
        const size_t d = dimension, blockBytes = quads * kCompactBlockRows * 4;
        const size_t blockCount = (total + kCompactBlockRows - 1) / kCompactBlockRows;
        blocks.resize(blockCount * blockBytes, 0);
        meta.resize(blockCount, CompactBlockMeta{});
        constexpr double roundUp = 1 + 1e-6;
        for (size_t r = rows; r < total; r++) {
            const float* x = xb + r * d;
            double largest = 0, squares = 0;
            for (size_t j = 0; j < d; j++) {
                if (!std::isfinite(x[j])) {
                    reset(d);
                    usable = false;
                    return;
                }
                largest = std::max(largest, std::fabs(double(x[j])));
                squares += double(x[j]) * double(x[j]);
            }
            const float scale = float(largest / 127);
            int8_t* block = blocks.data() + (r / kCompactBlockRows) * blockBytes + (r % kCompactBlockRows) * 4;
            int32_t sum = 0, absoluteSum = 0;
            double error = 0;
            for (size_t j = 0; j < d; j++) {
                const long code = scale > 0 ? std::clamp(std::lround(double(x[j]) / double(scale)), -127L, 127L) : 0L;
                block[(j / 4) * kCompactBlockRows * 4 + (j % 4)] = int8_t(code);
                sum += int32_t(code);
                absoluteSum += int32_t(std::labs(code));
                error = std::max(error, std::fabs(double(x[j]) - double(scale) * double(code)));
            }
            CompactBlockMeta& m = meta[r / kCompactBlockRows];
            const size_t lane = r % kCompactBlockRows;
            m.sums[lane] = sum;
            m.scales[lane] = scale;
            m.errors[lane] = float(error * roundUp);
            m.scaledL1[lane] = float(double(scale) * double(absoluteSum) * roundUp);
            m.norms[lane] = float(std::sqrt(squares) * roundUp);
        }
        rows = total;
    }

    /// Quantises `query` and derives the bound coefficients: |s̃ᵢ − sᵢ| ≤ α·errᵢ + β·l1ᵢ + γ·‖xᵢ‖ + ε, where sᵢ is
    /// any float32 evaluation of ⟨q, xᵢ⟩ in d terms.
    ///   Σⱼ qⱼxᵢⱼ − t·sᵢ·Σⱼ rⱼcᵢⱼ = Σⱼ qⱼ(xᵢⱼ − sᵢcᵢⱼ) + Σⱼ sᵢcᵢⱼ(qⱼ − t·rⱼ)
    ///   ⇒ |…| ≤ ‖q‖₁·errᵢ + max|qⱼ − t·rⱼ|·sᵢΣ|cᵢⱼ|    (α = ‖q‖₁, β = max|qⱼ − t·rⱼ|).
    /// The integer dot is exact; turning it into s̃ᵢ costs ≤ 3 float roundings of |s̃ᵢ| ≤ (1 + ε′)‖q‖‖xᵢ‖, and the
    /// float32 re-scoring is within d·2⁻²⁴·‖q‖‖xᵢ‖ of exact: γ = (d + 8)·2⁻²⁴·‖q‖. Everything × 1.01 for the
    /// float rounding of the bound and of s̃ᵢ ± eᵢ themselves; ε keeps a zero bound from being exactly zero.
    void prepare(const float* query, CompactQuery& out) const {
        double largest = 0, absolute = 0, squares = 0;
        for (size_t j = 0; j < dimension; j++) {
            largest = std::max(largest, std::fabs(double(query[j])));
            absolute += std::fabs(double(query[j]));
            squares += double(query[j]) * double(query[j]);
        }
        const float scale = float(largest / 127);
        out.quads.assign(quads, 0x80808080u);  // padding dimensions: r = 0
        double queryError = 0;
        for (size_t j = 0; j < dimension; j++) {
            const long code = scale > 0 ? std::clamp(std::lround(double(query[j]) / double(scale)), -127L, 127L) : 0L;
            queryError = std::max(queryError, std::fabs(double(query[j]) - double(scale) * double(code)));
            uint32_t& packed = out.quads[j / 4];
            const unsigned shift = unsigned(j % 4) * 8;
            packed = (packed & ~(0xffu << shift)) | (uint32_t(code + 128) << shift);
        }
        out.scale = scale;
        const double margin = 1.01;
        out.alpha = float(absolute * margin);
        out.beta = float(queryError * margin);
        out.gamma = float(double(dimension + 8) * std::ldexp(1.0, -24) * std::sqrt(squares) * margin);
        out.epsilon = 1e-30f;
    }

    /// Calls `visit(row, s̃, e)` for every row whose upper bound reaches `threshold` when it is scanned (see
    /// compactScanVNNI).
    /// `scan` for G queries in one pass over the rows (see compactScanVNNIGroup).
    template <int G, class Visit>
    void scanGroup(const CompactQuery* const* qs, float* thresholds, Visit&& visit) const {
#ifdef CFAISS_COMPACT_X86
        compactScanVNNIGroup<G>(blocks.data(), meta.data(), rows, quads, qs, thresholds, visit);
#else
        (void)qs;
        (void)thresholds;
        (void)visit;
#endif
    }

    template <class Visit>
    void scan(const CompactQuery& q, float& threshold, Visit&& visit) const {
#ifdef CFAISS_COMPACT_X86
        compactScanVNNI(blocks.data(), meta.data(), rows, quads, q, threshold, visit);
#else
        (void)q;
        (void)threshold;
        (void)visit;
#endif
    }
};

}  // namespace cfaiss

#endif
