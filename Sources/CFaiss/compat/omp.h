/*
 * Minimal <omp.h> for compiling against Faiss's headers with the Swift toolchain's clang.
 *
 * Debian's libfaiss is built with GCC and links libgomp, but the GCC <omp.h> is not on clang's search path
 * (and may not be installed at all). Faiss's headers only need `omp_lock_t` (impl/HNSW.h); the shim calls two
 * thread-count functions. These declarations match libgomp's ABI on Linux (omp_lock_t is a 4-byte, 4-aligned
 * futex word). This directory is a private header search path of the CFaiss target only.
 */
#ifndef CFAISS_COMPAT_OMP_H
#define CFAISS_COMPAT_OMP_H

typedef struct {
    unsigned char _x[4] __attribute__((__aligned__(4)));
} omp_lock_t;

#ifdef __cplusplus
extern "C" {
#endif
void omp_set_num_threads(int);
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_init_lock(omp_lock_t*);
void omp_destroy_lock(omp_lock_t*);
void omp_set_lock(omp_lock_t*);
void omp_unset_lock(omp_lock_t*);
#ifdef __cplusplus
}
#endif
#endif
