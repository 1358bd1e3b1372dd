#ifndef RECDB_CKERNELS_H
#define RECDB_CKERNELS_H
// Training kernels of Learn that Swift cannot vectorise past SSE2 without compiler flags (the package has
// none, so apps can depend on it by version): each has an AVX-512 and an AVX2 path chosen at run time from
// CPUID, and a portable path. Every path gives bit-for-bit the same result as the others and as the Swift
// code they replace (no contraction into FMA, the same operation order and the same 8-lane sums), so
// training results do not depend on the CPU.
#include <stddef.h>
#include <stdint.h>
#include "cprefetch.h"  // the cache-line prefetch hint (this header is the module's umbrella)

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set levels: the best one this CPU and OS support is used; tests run each supported one.
enum { RECDB_KERNELS_PORTABLE = 0, RECDB_KERNELS_AVX2 = 1, RECDB_KERNELS_AVX512 = 2 };

/// The best level this CPU (and the OS's saved register state) supports.
int recdb_kernels_best_level(void);

/// One row of the sampled softmax (`SampledSoftmaxCrossEntropy`), in place over its `n` candidate logits:
/// subtracts `log_q`, masks the slot `hit` (−1: none), and turns the row into softmax · `scale` over the
/// candidates and the positive (whose logit `positive` is kept apart). Writes the row's loss and the
/// positive's probability. `level` above the best supported one is lowered to it.
void recdb_sampled_softmax_row(int level, float *row, ptrdiff_t n, const float *log_q, float positive, ptrdiff_t hit,
                               float scale, float *loss, float *positive_probability);

/// Dropout mask words `first_word..<end_word` of a mask of `count` floats (`DropoutMask.fill`): word w is
/// SplitMix64(key + w · 0xD1B54A32D192ED03), its four 16-bit parts decide floats 4w ..< 4w + 4 (kept, as
/// `scale`, when the part is ≥ `threshold`, else 0).
void recdb_dropout_fill(int level, float *mask, ptrdiff_t count, ptrdiff_t first_word, ptrdiff_t end_word,
                        uint64_t threshold, float scale, uint64_t key);

/// AdamW's update (`AdamW.update`) of elements `start..<end` of one parameter: w ← w·decay, then the Adam
/// step with bias-corrected moments.
void recdb_adamw_apply(int level, float *w, const float *g, float *m, float *v, ptrdiff_t start, ptrdiff_t end,
                       float decay, float step_size, float beta1, float beta2, float c2_root, float epsilon);

/// The same update on whole rows of a `[*, width]` parameter (`rows[0..<count]`, row indices), whose
/// gradient rows are zeroed afterwards (lazy AdamW of a row-sparse embedding table).
void recdb_adamw_rows(int level, float *w, float *g, float *m, float *v, ptrdiff_t width, const int32_t *rows,
                      ptrdiff_t count, float decay, float step_size, float beta1, float beta2, float c2_root,
                      float epsilon);

/// dx = dy · GELU'(x) on elements `start..<end` (`Kernels.activationBackward`; erf form, `fastErf` and
/// `fastExp` on whole blocks of 8 from `start`, libm's erff and expf on the rest). `dx` may be `dy`.
void recdb_gelu_backward(int level, const float *dy, const float *x, ptrdiff_t start, ptrdiff_t end, float *dx);

#ifdef __cplusplus
}
#endif
#endif
