/* OpenBLAS's cblas.h already declares openblas_set_num_threads / openblas_get_num_threads,
   which Learn uses to keep small products single-threaded. */
#include <cblas.h>

/* LAPACK (bundled in OpenBLAS): symmetric eigen-decomposition, used by Learn's PCA. */
void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
            float *w, float *work, const int *lwork, int *info);
