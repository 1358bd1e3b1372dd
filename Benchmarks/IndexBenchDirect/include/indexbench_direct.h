/*
 * The C++ peer of the IndexBench overhead benchmark: drives a Faiss HNSW index directly from C++, without
 * RecDB's shim or Swift, so the benchmark can compare the two on the same index, queries and parameters.
 *
 * The peer loads the Faiss payload out of a RecDB-serialized index (VectorIndex.serialized()), so both sides
 * search an identical graph over identical vectors. Labels are Faiss row positions (RecDB ids are mapped
 * from them by the wrapper; the benchmark adds ids in row order, so id = label + 1 there).
 */
#ifndef INDEXBENCH_DIRECT_H
#define INDEXBENCH_DIRECT_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct indexbench_direct indexbench_direct_t;

/* Returns NULL on failure (message in *error_out, static storage, may be NULL). */
indexbench_direct_t* indexbench_direct_load(const uint8_t* recdb_serialized, size_t size, const char** error_out);
void indexbench_direct_free(indexbench_direct_t* index);

/* What a C++ user writes: `index->search(1, q, k, D, I, &SearchParametersHNSW{efSearch})` once per query, with
 * one OpenMP thread. Labels (n*k) go to labels_out. Returns elapsed seconds of the loop. */
double indexbench_direct_search_each(indexbench_direct_t* index, const float* queries, size_t n, size_t k,
                                     int ef_search, int64_t* labels_out);

/* The same single-thread graph search RecDB's shim runs for one query (faiss::HNSW::search with a reused
 * VisitedTable and the shim's AVX2 distance kernels from FlatDistance.h), straight from C++: the floor for the
 * wrapper. Returns elapsed seconds of the loop. */
double indexbench_direct_hnsw_loop(indexbench_direct_t* index, const float* queries, size_t n, size_t k,
                                   int ef_search, int64_t* labels_out);

/* Builds a fresh faiss::IndexHNSWFlat(d, m) (L2) over n rows with one IndexHNSWFlat::add call, as a C++ user
 * would; returns the seconds of the add (the peer of VectorIndex.add for the build comparison). */
double indexbench_direct_hnsw_build(const float* x, size_t n, size_t d, int m);

/* The same build, then nq queries searched on the built graph with the shim's graph search (HNSWSearch.h) at each of
 * the nef efSearch values: labels (row positions) of query q at ef_searches[e] go to labels_out[(e * nq + q) * k ...].
 * Returns the seconds of the add only. */
double indexbench_direct_hnsw_build_search(const float* x, size_t n, size_t d, int m, const float* queries, size_t nq,
                                           size_t k, const int* ef_searches, size_t nef, int64_t* labels_out);

/* IndexHNSWFlat(d, m) under L2 or inner product, built by IndexHNSWFlat::add calls of `chunk` rows (0: one call) until
 * all n rows are linked or `budget_seconds` (> 0) have passed between calls; *rows_linked says how many were. When
 * all were, the nq queries are searched as in indexbench_direct_hnsw_build_search. Returns the seconds of the adds. */
double indexbench_direct_hnsw_build_bounded(const float* x, size_t n, size_t d, int m, int inner_product,
                                            double budget_seconds, size_t chunk, size_t* rows_linked,
                                            const float* queries, size_t nq, size_t k, const int* ef_searches,
                                            size_t nef, int64_t* labels_out);

/* omp_get_max_threads() as Faiss sees it (the threads IndexHNSW::add may use). */
int indexbench_direct_omp_threads(void);

#ifdef __cplusplus
}
#endif
#endif
