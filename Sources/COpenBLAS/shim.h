/* OpenBLAS's cblas.h already declares openblas_set_num_threads / openblas_get_num_threads,
   which Learn uses to keep small products single-threaded. */
#include <cblas.h>
