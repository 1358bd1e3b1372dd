// FlatDistance.h — distance kernels for float rows, with a runtime-selected AVX2/FMA version.
//
// Why: Debian's libfaiss 1.7.3 is compiled for baseline x86-64, so its distance functions are the scalar
// `fvec_*_ref` loops (one dependent multiply-add per element). An HNSW query spends nearly all its time there:
// on 384-d Beauty vectors ~0.3 ms per query. The same HNSW graph search with these kernels runs several times
// faster. The AVX2 code is compiled through `__attribute__((target))` and chosen at run time with
// `__builtin_cpu_supports`, so no compiler flags are needed (Package.swift may not use unsafeFlags) and the
// binary still runs on CPUs without AVX2 (portable 8-accumulator loops).
//
// Private to CFaiss (also included by the IndexBench C++ peer, to time the same kernels without the wrapper).
#ifndef CFAISS_FLAT_DISTANCE_H
#define CFAISS_FLAT_DISTANCE_H

#include <faiss/impl/DistanceComputer.h>

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CFAISS_X86 1
#endif

namespace cfaiss {

using DistanceKernel = float (*)(const float*, const float*, size_t);

inline float innerProductPortable(const float* x, const float* y, size_t d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[i + j] * y[i + j];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < d; i++) sum += x[i] * y[i];
    return sum;
}

inline float squaredL2Portable(const float* x, const float* y, size_t d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++) {
            float diff = x[i + j] - y[i + j];
            acc[j] += diff * diff;
        }
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < d; i++) sum += (x[i] - y[i]) * (x[i] - y[i]);
    return sum;
}

#ifdef CFAISS_X86
__attribute__((target("avx2,fma"))) inline float horizontalSum(__m256 v) {
    __m128 low = _mm256_castps256_ps128(v), high = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(low, high);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline float innerProductAVX2(const float* x, const float* y, size_t d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = horizontalSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < d; i++) sum += x[i] * y[i];
    return sum;
}

__attribute__((target("avx2,fma"))) inline float squaredL2AVX2(const float* x, const float* y, size_t d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
        a2 = _mm256_fmadd_ps(d2, d2, a2);
        a3 = _mm256_fmadd_ps(d3, d3, a3);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
    }
    float sum = horizontalSum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < d; i++) sum += (x[i] - y[i]) * (x[i] - y[i]);
    return sum;
}
#endif

inline bool cpuHasAVX2() {
#ifdef CFAISS_X86
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
#else
    return false;
#endif
}

inline DistanceKernel innerProductKernel() {
#ifdef CFAISS_X86
    if (cpuHasAVX2()) return innerProductAVX2;
#endif
    return innerProductPortable;
}

inline DistanceKernel squaredL2Kernel() {
#ifdef CFAISS_X86
    if (cpuHasAVX2()) return squaredL2AVX2;
#endif
    return squaredL2Portable;
}

/// A Faiss DistanceComputer over contiguous float rows (IndexFlat storage). For inner product it returns the
/// *negated* product, because HNSW minimises (Faiss 1.7.3's IndexHNSW does the same internally).
struct FlatRowsDistance final : faiss::DistanceComputer {
    const float* rows;
    size_t dimension;
    bool innerProduct;
    DistanceKernel kernel;
    const float* query = nullptr;

    FlatRowsDistance(const float* rows, size_t dimension, bool innerProduct)
            : rows(rows), dimension(dimension), innerProduct(innerProduct),
              kernel(innerProduct ? innerProductKernel() : squaredL2Kernel()) {}

    void set_query(const float* x) override { query = x; }

    float operator()(idx_t i) override {
        float v = kernel(query, rows + size_t(i) * dimension, dimension);
        return innerProduct ? -v : v;
    }

    float symmetric_dis(idx_t i, idx_t j) override {
        float v = kernel(rows + size_t(i) * dimension, rows + size_t(j) * dimension, dimension);
        return innerProduct ? -v : v;
    }
};

}  // namespace cfaiss

#endif
