// See ckernels.h. Bit-for-bit equality across paths is the contract (tests check it against the Swift
// reference): no FMA contraction, the same operation order as the Swift code, sums over the same 8 lanes.
#include "ckernels.h"
#include <math.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define RECDB_HAVE_X86_PATHS 1
#endif

// MARK: - Choosing a level

#ifdef RECDB_HAVE_X86_PATHS
static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int detect_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX)) return RECDB_KERNELS_PORTABLE;
    unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return RECDB_KERNELS_PORTABLE;  // the OS saves SSE and AVX state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX2)) return RECDB_KERNELS_PORTABLE;
    // AVX-512 F, DQ (64-bit multiplies), BW (16-bit compares) and VL, with opmask and ZMM state saved.
    unsigned need = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
    if ((b & need) == need && (xcr0 & 0xE6) == 0xE6) return RECDB_KERNELS_AVX512;
    return RECDB_KERNELS_AVX2;
}
#endif

// -1 = not yet known. Races only write the same value.
static int best_level = -1;

int recdb_kernels_best_level(void) {
    int level = __atomic_load_n(&best_level, __ATOMIC_RELAXED);
    if (level < 0) {
#ifdef RECDB_HAVE_X86_PATHS
        level = detect_level();
#else
        level = RECDB_KERNELS_PORTABLE;
#endif
        __atomic_store_n(&best_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

static inline int usable_level(int requested) {
    int best = recdb_kernels_best_level();
    return requested < best ? requested : best;
}

// MARK: - Sampled softmax row

// The constants of `fastExp` (FastMath.swift), as the same floats.
#define EXP_LOW -87.0f
#define EXP_HIGH 88.0f
#define EXP_MAGIC 12582912.0f
#define EXP_LOG2E 1.4426950408889634f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO 2.1219444e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

// `fastExp` on one lane, as the Swift SIMD code computes each lane.
static inline float exp_lane(float x) {
    if (x < EXP_LOW) x = EXP_LOW;
    if (x > EXP_HIGH) x = EXP_HIGH;
    float t = x * EXP_LOG2E + EXP_MAGIC;
    float n = t - EXP_MAGIC;
    float r = x - n * EXP_LN2_HI;
    r = r + n * EXP_LN2_LO;
    float p = EXP_P0;
    p = p * r + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    p = p * (r * r) + r + 1;
    int32_t ti, mi, pi;
    float magic = EXP_MAGIC;
    memcpy(&ti, &t, 4); memcpy(&mi, &magic, 4); memcpy(&pi, &p, 4);
    uint32_t e = (uint32_t)ti - (uint32_t)mi;
    uint32_t bits = (uint32_t)pi + (e << 23);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

// The part between the vector passes, shared by every path: the 8 lane sums (`lanes`, as SIMD.sum() adds
// them: in order, from −0), the scalar tail from `vector_end` (= n rounded down to 8), the hit and the
// positive. Returns the softmax's denominator and writes e^(positive − mx).
static inline float softmax_denominator(float *row, ptrdiff_t n, ptrdiff_t vector_end, float mx, const float lanes[8],
                                        float positive, ptrdiff_t hit, float *e_positive) {
    float sum = -0.0f;
    for (int l = 0; l < 8; l++) sum += lanes[l];
    for (ptrdiff_t i = vector_end; i < n; i++) { float v = expf(row[i] - mx); row[i] = v; sum += v; }
    if (hit >= 0) { sum -= row[hit]; row[hit] = 0; }
    *e_positive = expf(positive - mx);
    return sum + *e_positive;
}

// After the vector part of the row is scaled by inv · scale: the tail's scaling and the row's outputs.
static inline void softmax_outputs(float *row, ptrdiff_t n, ptrdiff_t vector_end, float sum, float inv, float mx,
                                   float e_positive, float positive, float scale, float *loss, float *p0) {
    for (ptrdiff_t i = vector_end; i < n; i++) row[i] *= inv * scale;
    *loss = logf(sum) + mx - positive;
    *p0 = e_positive * inv;
}

static void softmax_row_portable(float *row, ptrdiff_t n, const float *log_q, float positive, ptrdiff_t hit,
                                 float scale, float *loss, float *p0) {
    ptrdiff_t vector_end = n & ~(ptrdiff_t)7;
    for (ptrdiff_t i = 0; i < n; i++) row[i] -= log_q[i];
    if (hit >= 0) row[hit] = -INFINITY;
    float lane_max[8];
    for (int l = 0; l < 8; l++) lane_max[l] = positive;
    for (ptrdiff_t i = 0; i < vector_end; i += 8)
        for (int l = 0; l < 8; l++) if (row[i + l] > lane_max[l]) lane_max[l] = row[i + l];
    float mx = lane_max[0];
    for (int l = 1; l < 8; l++) mx = lane_max[l] > mx ? lane_max[l] : mx;
    for (ptrdiff_t i = vector_end; i < n; i++) mx = row[i] > mx ? row[i] : mx;
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < vector_end; i += 8)
        for (int l = 0; l < 8; l++) { float v = exp_lane(row[i + l] - mx); row[i + l] = v; lanes[l] += v; }
    float e_positive, sum = softmax_denominator(row, n, vector_end, mx, lanes, positive, hit, &e_positive);
    float inv = 1 / sum, k = inv * scale;
    for (ptrdiff_t i = 0; i < vector_end; i++) row[i] *= k;
    softmax_outputs(row, n, vector_end, sum, inv, mx, e_positive, positive, scale, loss, p0);
}

#ifdef RECDB_HAVE_X86_PATHS
#define AVX2_TARGET __attribute__((target("avx2")))
#define AVX512_TARGET __attribute__((target("avx2,avx512f,avx512dq,avx512bw,avx512vl")))

AVX2_TARGET static inline __m256 exp8(__m256 x) {
    // max(c, x) is `c > x ? c : x` and min(c, x) is `c < x ? c : x` (a NaN x passes through): the Swift clamps.
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HIGH), _mm256_max_ps(_mm256_set1_ps(EXP_LOW), x));
    __m256 magic = _mm256_set1_ps(EXP_MAGIC);
    __m256 t = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(EXP_LN2_HI)));
    r = _mm256_add_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(EXP_LN2_LO)));
    __m256 p = _mm256_set1_ps(EXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P5));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1));
    __m256i e = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(e, 23)));
}

AVX2_TARGET static void softmax_row_avx2(float *row, ptrdiff_t n, const float *log_q, float positive, ptrdiff_t hit,
                                         float scale, float *loss, float *p0) {
    ptrdiff_t vector_end = n & ~(ptrdiff_t)7;
    for (ptrdiff_t i = 0; i < vector_end; i += 8)
        _mm256_storeu_ps(row + i, _mm256_sub_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(log_q + i)));
    for (ptrdiff_t i = vector_end; i < n; i++) row[i] -= log_q[i];
    if (hit >= 0) row[hit] = -INFINITY;
    __m256 mx8 = _mm256_set1_ps(positive);
    for (ptrdiff_t i = 0; i < vector_end; i += 8) {
        __m256 v = _mm256_loadu_ps(row + i);
        mx8 = _mm256_blendv_ps(mx8, v, _mm256_cmp_ps(v, mx8, _CMP_GT_OQ));
    }
    float lane_max[8];
    _mm256_storeu_ps(lane_max, mx8);
    float mx = lane_max[0];
    for (int l = 1; l < 8; l++) mx = lane_max[l] > mx ? lane_max[l] : mx;
    for (ptrdiff_t i = vector_end; i < n; i++) mx = row[i] > mx ? row[i] : mx;
    __m256 m8 = _mm256_set1_ps(mx), s8 = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < vector_end; i += 8) {
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + i), m8));
        _mm256_storeu_ps(row + i, v);
        s8 = _mm256_add_ps(s8, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, s8);
    float e_positive, sum = softmax_denominator(row, n, vector_end, mx, lanes, positive, hit, &e_positive);
    float inv = 1 / sum;
    __m256 k8 = _mm256_set1_ps(inv * scale);
    for (ptrdiff_t i = 0; i < vector_end; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), k8));
    softmax_outputs(row, n, vector_end, sum, inv, mx, e_positive, positive, scale, loss, p0);
}

AVX512_TARGET static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HIGH), _mm512_max_ps(_mm512_set1_ps(EXP_LOW), x));
    __m512 magic = _mm512_set1_ps(EXP_MAGIC);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(EXP_LN2_HI)));
    r = _mm512_add_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(EXP_LN2_LO)));
    __m512 p = _mm512_set1_ps(EXP_P0);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(EXP_P5));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1));
    __m512i e = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic));
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(e, 23)));
}

AVX512_TARGET static void softmax_row_avx512(float *row, ptrdiff_t n, const float *log_q, float positive,
                                             ptrdiff_t hit, float scale, float *loss, float *p0) {
    ptrdiff_t vector_end = n & ~(ptrdiff_t)7, wide_end = n & ~(ptrdiff_t)15;
    // One pass subtracts log q and takes the maximum (exact whatever the lane count); the hit, masked
    // to −∞ before the maximum in the Swift code, is left out of the comparison instead.
    // Two running maxima, so consecutive blocks do not wait on each other's compare.
    __m512 mx16[2] = {_mm512_set1_ps(positive), _mm512_set1_ps(positive)};
    for (ptrdiff_t i = 0; i < wide_end; i += 16) {
        __m512 v = _mm512_sub_ps(_mm512_loadu_ps(row + i), _mm512_loadu_ps(log_q + i));
        _mm512_storeu_ps(row + i, v);
        int a = (int)(i >> 4) & 1;
        __mmask16 larger = _mm512_cmp_ps_mask(v, mx16[a], _CMP_GT_OQ);
        if (hit >= i && hit < i + 16) larger &= (__mmask16)~(1u << (hit - i));
        mx16[a] = _mm512_mask_blend_ps(larger, mx16[a], v);
    }
    for (ptrdiff_t i = wide_end; i < n; i++) row[i] -= log_q[i];
    if (hit >= 0) row[hit] = -INFINITY;
    float lane_max[32];
    _mm512_storeu_ps(lane_max, mx16[0]);
    _mm512_storeu_ps(lane_max + 16, mx16[1]);
    float mx = lane_max[0];
    for (int l = 1; l < 32; l++) mx = lane_max[l] > mx ? lane_max[l] : mx;
    for (ptrdiff_t i = wide_end; i < n; i++) mx = row[i] > mx ? row[i] : mx;
    // Sums stay in 8 lanes, each 16-wide block adding its low then its high half, as the 8-wide loop does.
    __m512 m16 = _mm512_set1_ps(mx);
    __m256 s8 = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < wide_end; i += 16) {
        __m512 v = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + i), m16));
        _mm512_storeu_ps(row + i, v);
        s8 = _mm256_add_ps(s8, _mm512_castps512_ps256(v));
        s8 = _mm256_add_ps(s8, _mm512_extractf32x8_ps(v, 1));
    }
    if (wide_end < vector_end) {
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + wide_end), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(row + wide_end, v);
        s8 = _mm256_add_ps(s8, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, s8);
    float e_positive, sum = softmax_denominator(row, n, vector_end, mx, lanes, positive, hit, &e_positive);
    float inv = 1 / sum;
    __m512 k16 = _mm512_set1_ps(inv * scale);
    for (ptrdiff_t i = 0; i < wide_end; i += 16) _mm512_storeu_ps(row + i, _mm512_mul_ps(_mm512_loadu_ps(row + i), k16));
    for (ptrdiff_t i = wide_end; i < vector_end; i++) row[i] *= inv * scale;
    softmax_outputs(row, n, vector_end, sum, inv, mx, e_positive, positive, scale, loss, p0);
}
#endif

void recdb_sampled_softmax_row(int level, float *row, ptrdiff_t n, const float *log_q, float positive, ptrdiff_t hit,
                               float scale, float *loss, float *positive_probability) {
    switch (usable_level(level)) {
#ifdef RECDB_HAVE_X86_PATHS
    case RECDB_KERNELS_AVX512: softmax_row_avx512(row, n, log_q, positive, hit, scale, loss, positive_probability); return;
    case RECDB_KERNELS_AVX2: softmax_row_avx2(row, n, log_q, positive, hit, scale, loss, positive_probability); return;
#endif
    default: softmax_row_portable(row, n, log_q, positive, hit, scale, loss, positive_probability); return;
    }
}

// MARK: - Dropout mask

static inline uint64_t split_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void dropout_words_portable(float *mask, ptrdiff_t count, ptrdiff_t first, ptrdiff_t end, uint64_t threshold,
                                   float scale, uint64_t key) {
    for (ptrdiff_t w = first; w < end; w++) {
        uint64_t h = split_mix64(key + (uint64_t)w * 0xD1B54A32D192ED03ull);
        ptrdiff_t base = w * 4, n = count - base < 4 ? count - base : 4;
        for (ptrdiff_t j = 0; j < n; j++) mask[base + j] = ((h >> (16 * j)) & 0xFFFF) >= threshold ? scale : 0;
    }
}

#ifdef RECDB_HAVE_X86_PATHS
// Eight words (32 floats) a step: the words' 16-bit parts, in memory order, are the 32 floats' draws.
AVX512_TARGET static void dropout_words_avx512(float *mask, ptrdiff_t count, ptrdiff_t first, ptrdiff_t end,
                                               uint64_t threshold, float scale, uint64_t key) {
    ptrdiff_t full_end = count / 4;  // words whose four floats are all inside the mask
    if (full_end > end) full_end = end;
    ptrdiff_t w = first;
    if (threshold <= 0xFFFF) {
        __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        __m512i golden = _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ull);
        __m512i m1 = _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull), m2 = _mm512_set1_epi64((long long)0x94D049BB133111EBull);
        __m512i stride = _mm512_set1_epi64((long long)0xD1B54A32D192ED03ull);
        __m512i limit = _mm512_set1_epi16((short)threshold);
        __m512 kept = _mm512_set1_ps(scale);
        for (; w + 8 <= full_end; w += 8) {
            __m512i z = _mm512_add_epi64(_mm512_set1_epi64((long long)key),
                                         _mm512_mullo_epi64(_mm512_add_epi64(_mm512_set1_epi64(w), lane), stride));
            z = _mm512_add_epi64(z, golden);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), m1);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), m2);
            z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
            __mmask32 keep = _mm512_cmpge_epu16_mask(z, limit);
            _mm512_storeu_ps(mask + w * 4, _mm512_maskz_mov_ps((__mmask16)keep, kept));
            _mm512_storeu_ps(mask + w * 4 + 16, _mm512_maskz_mov_ps((__mmask16)(keep >> 16), kept));
        }
    }
    dropout_words_portable(mask, count, w, end, threshold, scale, key);
}
#endif

void recdb_dropout_fill(int level, float *mask, ptrdiff_t count, ptrdiff_t first_word, ptrdiff_t end_word,
                        uint64_t threshold, float scale, uint64_t key) {
#ifdef RECDB_HAVE_X86_PATHS
    if (usable_level(level) == RECDB_KERNELS_AVX512) {
        dropout_words_avx512(mask, count, first_word, end_word, threshold, scale, key);
        return;
    }
#endif
    dropout_words_portable(mask, count, first_word, end_word, threshold, scale, key);
}

// MARK: - AdamW

static inline void adamw_portable(float *w, const float *g, float *m, float *v, ptrdiff_t start, ptrdiff_t end,
                                  float decay, float step_size, float b1, float b2, float c2_root, float eps) {
    float one_minus_b1 = 1 - b1, one_minus_b2 = 1 - b2;
    for (ptrdiff_t i = start; i < end; i++) {
        float gi = g[i];
        float wi = w[i] * decay;
        float mi = b1 * m[i] + one_minus_b1 * gi;
        float vi = b2 * v[i] + one_minus_b2 * gi * gi;
        m[i] = mi; v[i] = vi;
        w[i] = wi - step_size * mi / (sqrtf(vi) / c2_root + eps);
    }
}

#ifdef RECDB_HAVE_X86_PATHS
AVX2_TARGET static void adamw_avx2(float *w, const float *g, float *m, float *v, ptrdiff_t start, ptrdiff_t end,
                                   float decay, float step_size, float b1, float b2, float c2_root, float eps) {
    __m256 vd = _mm256_set1_ps(decay), vs = _mm256_set1_ps(step_size), vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2);
    __m256 vb1c = _mm256_set1_ps(1 - b1), vb2c = _mm256_set1_ps(1 - b2), vc2 = _mm256_set1_ps(c2_root), ve = _mm256_set1_ps(eps);
    ptrdiff_t i = start;
    for (; i + 8 <= end; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 wi = _mm256_mul_ps(_mm256_loadu_ps(w + i), vd);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vb1c, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(vb2c, gi), gi));
        _mm256_storeu_ps(m + i, mi); _mm256_storeu_ps(v + i, vi);
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vc2), ve);
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(vs, mi), denom)));
    }
    adamw_portable(w, g, m, v, i, end, decay, step_size, b1, b2, c2_root, eps);
}

AVX512_TARGET static void adamw_avx512(float *w, const float *g, float *m, float *v, ptrdiff_t start, ptrdiff_t end,
                                       float decay, float step_size, float b1, float b2, float c2_root, float eps) {
    __m512 vd = _mm512_set1_ps(decay), vs = _mm512_set1_ps(step_size), vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2);
    __m512 vb1c = _mm512_set1_ps(1 - b1), vb2c = _mm512_set1_ps(1 - b2), vc2 = _mm512_set1_ps(c2_root), ve = _mm512_set1_ps(eps);
    ptrdiff_t i = start;
    for (; i + 16 <= end; i += 16) {
        __m512 gi = _mm512_loadu_ps(g + i);
        __m512 wi = _mm512_mul_ps(_mm512_loadu_ps(w + i), vd);
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(vb1c, gi));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(vb2c, gi), gi));
        _mm512_storeu_ps(m + i, mi); _mm512_storeu_ps(v + i, vi);
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vc2), ve);
        _mm512_storeu_ps(w + i, _mm512_sub_ps(wi, _mm512_div_ps(_mm512_mul_ps(vs, mi), denom)));
    }
    adamw_portable(w, g, m, v, i, end, decay, step_size, b1, b2, c2_root, eps);
}
#endif

typedef void (*adamw_kernel)(float *, const float *, float *, float *, ptrdiff_t, ptrdiff_t, float, float, float, float,
                             float, float);

static adamw_kernel adamw_for(int level) {
    switch (usable_level(level)) {
#ifdef RECDB_HAVE_X86_PATHS
    case RECDB_KERNELS_AVX512: return adamw_avx512;
    case RECDB_KERNELS_AVX2: return adamw_avx2;
#endif
    default: return adamw_portable;
    }
}

void recdb_adamw_apply(int level, float *w, const float *g, float *m, float *v, ptrdiff_t start, ptrdiff_t end,
                       float decay, float step_size, float beta1, float beta2, float c2_root, float epsilon) {
    adamw_for(level)(w, g, m, v, start, end, decay, step_size, beta1, beta2, c2_root, epsilon);
}

void recdb_adamw_rows(int level, float *w, float *g, float *m, float *v, ptrdiff_t width, const int32_t *rows,
                      ptrdiff_t count, float decay, float step_size, float beta1, float beta2, float c2_root,
                      float epsilon) {
    adamw_kernel kernel = adamw_for(level);
    // The rows are scattered over a table far larger than the caches: fetch the next row's four arrays
    // while this one is updated.
    const ptrdiff_t ahead = 2;
    for (ptrdiff_t k = 0; k < count; k++) {
        if (k + ahead < count) {
            ptrdiff_t next = (ptrdiff_t)rows[k + ahead] * width;
            for (ptrdiff_t x = 0; x < width; x += 16) {
                __builtin_prefetch(w + next + x, 1); __builtin_prefetch(g + next + x, 1);
                __builtin_prefetch(m + next + x, 1); __builtin_prefetch(v + next + x, 1);
            }
        }
        ptrdiff_t start = (ptrdiff_t)rows[k] * width;
        kernel(w, g, m, v, start, start + width, decay, step_size, beta1, beta2, c2_root, epsilon);
        memset(g + start, 0, (size_t)width * sizeof(float));
    }
}

// MARK: - GELU backward

// `fastErf` (FastMath.swift) on one lane.
static inline float erf_lane(float z) {
    int negative = z < 0;
    float a = negative ? -z : z;
    float t = 1 / (1 + 0.3275911f * a);
    float poly = 1.061405429f * t - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    poly = poly * t;
    float r = 1 - poly * exp_lane(-(a * a));
    return negative ? -r : r;
}

// The scalar tail: libm's erff and expf, as the Swift code's tail uses.
static inline void gelu_backward_tail(const float *dy, const float *x, ptrdiff_t start, ptrdiff_t end, float *dx) {
    for (ptrdiff_t i = start; i < end; i++) {
        float v = x[i];
        float cdf = 0.5f * (1 + erff(v * 0.70710677f));
        float pdf = 0.39894228f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

static void gelu_backward_portable(const float *dy, const float *x, ptrdiff_t start, ptrdiff_t end, float *dx) {
    ptrdiff_t vector_end = start + ((end - start) & ~(ptrdiff_t)7);
    for (ptrdiff_t i = start; i < vector_end; i++) {
        float v = x[i];
        float cdf = 0.5f * (1 + erf_lane(v * 0.70710677f));
        float pdf = 0.39894228f * exp_lane(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
    gelu_backward_tail(dy, x, vector_end, end, dx);
}

#ifdef RECDB_HAVE_X86_PATHS
AVX512_TARGET static inline __m512 erf16(__m512 z) {
    __m512 sign = _mm512_set1_ps(-0.0f);
    __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 a = _mm512_mask_blend_ps(negative, z, _mm512_xor_ps(z, sign));
    __m512 one = _mm512_set1_ps(1);
    __m512 t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(0.3275911f), a)));
    __m512 poly = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(1.061405429f), t), _mm512_set1_ps(1.453152027f));
    poly = _mm512_add_ps(_mm512_mul_ps(poly, t), _mm512_set1_ps(1.421413741f));
    poly = _mm512_sub_ps(_mm512_mul_ps(poly, t), _mm512_set1_ps(0.284496736f));
    poly = _mm512_add_ps(_mm512_mul_ps(poly, t), _mm512_set1_ps(0.254829592f));
    poly = _mm512_mul_ps(poly, t);
    __m512 r = _mm512_sub_ps(one, _mm512_mul_ps(poly, exp16(_mm512_xor_ps(_mm512_mul_ps(a, a), sign))));
    return _mm512_mask_blend_ps(negative, r, _mm512_xor_ps(r, sign));
}

AVX512_TARGET static void gelu_backward_avx512(const float *dy, const float *x, ptrdiff_t start, ptrdiff_t end, float *dx) {
    ptrdiff_t vector_end = start + ((end - start) & ~(ptrdiff_t)7), i = start;
    __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1), rt = _mm512_set1_ps(0.70710677f);
    __m512 minus_half = _mm512_set1_ps(-0.5f), density = _mm512_set1_ps(0.39894228f);
    for (; i + 16 <= vector_end; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 cdf = _mm512_mul_ps(half, _mm512_add_ps(one, erf16(_mm512_mul_ps(v, rt))));
        __m512 pdf = _mm512_mul_ps(density, exp16(_mm512_mul_ps(_mm512_mul_ps(minus_half, v), v)));
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dy + i), _mm512_add_ps(cdf, _mm512_mul_ps(v, pdf))));
    }
    gelu_backward_portable(dy, x, i, vector_end, dx);  // at most one block of 8: whole lanes, no tail
    gelu_backward_tail(dy, x, vector_end, end, dx);
}
#endif

void recdb_gelu_backward(int level, const float *dy, const float *x, ptrdiff_t start, ptrdiff_t end, float *dx) {
#ifdef RECDB_HAVE_X86_PATHS
    if (usable_level(level) == RECDB_KERNELS_AVX512) { gelu_backward_avx512(dy, x, start, end, dx); return; }
#endif
    gelu_backward_portable(dy, x, start, end, dx);
}
