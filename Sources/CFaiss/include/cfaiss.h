/*
 * cfaiss.h — a small C interface over Faiss 1.7.3 (C++), for RecDB's Swift `Index` module.
 *
 * Debian's libfaiss-dev ships only the C++ library, so this shim follows the style of Faiss's own C API:
 * opaque handles, `int` return codes (CFAISS_OK == 0), results through out-parameters, batch arguments
 * (n vectors at once, row-major n x d floats). Every entry point catches every C++ exception and turns it
 * into a code plus a thread-local message (cfaiss_last_error); no exception crosses this boundary.
 *
 * Ids. Callers identify vectors by uint32 ids (RecDB's dense internal ids; 0 is reserved and invalid).
 * Internally a Faiss label is the row's insertion position; the handle keeps the label <-> id map, so
 * the id of a row never depends on which index kind can or cannot `add_with_ids`. Removing or replacing
 * an id tombstones its old row (kinds that cannot delete, e.g. HNSW) or deletes it physically (IVF kinds),
 * and every search excludes tombstoned rows inside Faiss through an IDSelector. The map is serialized
 * together with the Faiss bytes.
 *
 * Threads. The shim does no locking. Any number of threads may call the read-only functions (search,
 * reconstruct, serialize, getters) concurrently on one handle; a mutating call (train, add, remove,
 * set_default_params, compact) must not run concurrently with any other call on the same handle.
 * The Swift wrapper enforces this with a readers-writer lock.
 */
#ifndef CFAISS_H
#define CFAISS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
enum {
    CFAISS_OK = 0,
    CFAISS_ERR_FAISS = 1,            /* Faiss threw (message is Faiss's own) */
    CFAISS_ERR_INVALID_ARGUMENT = 2, /* bad argument: id 0, k <= 0, dimension <= 0, ... */
    CFAISS_ERR_NOT_TRAINED = 3,      /* add/search before train on a kind that needs training */
    CFAISS_ERR_UNKNOWN_ID = 4,       /* reconstruct of an id that is not in the index */
    CFAISS_ERR_CORRUPT = 5,          /* bytes given to deserialize are not a valid serialized index */
    CFAISS_ERR_OUT_OF_MEMORY = 6,
    CFAISS_ERR_UNSUPPORTED = 7,      /* operation impossible for this index kind */
    CFAISS_ERR_UNKNOWN = 8           /* any other C++ exception */
};

/* Metrics. COSINE = vectors and queries are L2-normalised, then inner product. */
enum { CFAISS_METRIC_INNER_PRODUCT = 0, CFAISS_METRIC_L2 = 1, CFAISS_METRIC_COSINE = 2 };

/* Filter modes. */
enum { CFAISS_FILTER_NONE = 0, CFAISS_FILTER_EXCLUDE = 1, CFAISS_FILTER_ALLOW_ONLY = 2 };

/* An id filter applied inside the search (an IDSelector), never by over-fetching.
 * `sorted_ids`: the `count` ids of the set, ascending, without duplicates (required when count > 0).
 * `bitmap` (optional, may be NULL): the same set as bits (bit i of word i/64 set <=> id i is in the set;
 * `bitmap_words` 64-bit words; ids beyond are not in the set), used for O(1) membership tests.
 * ALLOW_ONLY with count <= CFAISS_EXACT_ALLOW_LIST_LIMIT is answered by scoring exactly the allowed vectors
 * (a filtered graph or IVF search over so few ids would return fewer than k); larger sets and EXCLUDE filter
 * inside the Faiss search. The memory must stay valid for the duration of the call. */
#define CFAISS_EXACT_ALLOW_LIST_LIMIT 2048
typedef struct {
    int mode;
    const uint32_t* sorted_ids;
    size_t count;
    const uint64_t* bitmap;
    size_t bitmap_words;
} cfaiss_filter_t;

/* Search-time parameters; a value <= 0 means "the index's default" (see cfaiss_index_set_default_params).
 * ef_search applies to HNSW kinds, nprobe to IVF kinds; each is ignored by kinds it does not apply to. */
typedef struct {
    int ef_search;
    int nprobe;
} cfaiss_search_params_t;

typedef struct cfaiss_index cfaiss_index_t;

/* Message of the last failed call on this thread ("" if none). Valid until the next failing call on this thread. */
const char* cfaiss_last_error(void);

/* Creates an empty index from a Faiss factory string ("Flat", "HNSW32", "IVF256,Flat", "OPQ16,IVF256,PQ16", ...). */
int cfaiss_index_create(const char* factory, int dimension, int metric, cfaiss_index_t** out);
void cfaiss_index_free(cfaiss_index_t* index);

int cfaiss_index_dimension(const cfaiss_index_t* index);
int cfaiss_index_metric(const cfaiss_index_t* index);
int cfaiss_index_is_trained(const cfaiss_index_t* index);
/* The factory string the index was created with; owned by the handle. */
const char* cfaiss_index_factory(const cfaiss_index_t* index);
/* Live ids (searchable vectors). */
int64_t cfaiss_index_count(const cfaiss_index_t* index);
/* Rows held by Faiss, including tombstoned ones (>= count). */
int64_t cfaiss_index_stored_rows(const cfaiss_index_t* index);
/* 1 if the id is live. */
int cfaiss_index_contains(const cfaiss_index_t* index, uint32_t id);

/// 1 if exact searches of this index scan its int8 copy (plain Flat under inner product or cosine, on a CPU with
/// AVX512-VNNI, all values finite) and re-score candidates in float32; 0 if they scan the float rows.
int cfaiss_index_scans_quantized_copy(const cfaiss_index_t* index);
/* Copies up to `capacity` live ids, ascending, into out_ids; *out_count = number of live ids. */
int cfaiss_index_live_ids(const cfaiss_index_t* index, uint32_t* out_ids, size_t capacity, size_t* out_count);

/* Trains on n vectors. Faiss's stderr warnings during training (e.g. too few points per centroid) are
 * captured, not printed; they are returned by cfaiss_index_training_log until the next train. */
int cfaiss_index_train(cfaiss_index_t* index, size_t n, const float* vectors);
const char* cfaiss_index_training_log(const cfaiss_index_t* index);

/* Adds n vectors with their ids (none may be 0). An id already present is replaced (its old row is
 * tombstoned or deleted). If ids repeat within one call, the last occurrence wins. */
int cfaiss_index_add(cfaiss_index_t* index, size_t n, const float* vectors, const uint32_t* ids);

/* Removes ids; ids not present are ignored. *out_removed (may be NULL) = number actually removed. */
int cfaiss_index_remove(cfaiss_index_t* index, size_t n, const uint32_t* ids, size_t* out_removed);

/* Searches n queries for their k nearest live vectors.
 * out_ids: n*k ids (0 = no result in that slot; results are packed at the front of each row).
 * out_scores: n*k scores: inner product for INNER_PRODUCT / COSINE (descending), squared L2 distance for
 * L2 (ascending). filter and params may be NULL. */
int cfaiss_index_search(const cfaiss_index_t* index, size_t n, const float* queries, size_t k,
                        const cfaiss_filter_t* filter, const cfaiss_search_params_t* params,
                        uint32_t* out_ids, float* out_scores);

/* Searches n queries, each with its own k (ks[q] <= row_stride) and filter (filters may be NULL: none for
 * any; otherwise n filters). Row q of out_ids / out_scores starts at q * row_stride; its first ks[q] slots are
 * written as cfaiss_index_search writes them, and the results are the ones cfaiss_index_search gives that
 * query alone. A plain flat similarity index scanned through its int8 copy scans its rows once for each group
 * of queries; other kinds search query by query. */
int cfaiss_index_search_each(const cfaiss_index_t* index, size_t n, const float* queries, const size_t* ks,
                             const cfaiss_filter_t* filters, const cfaiss_search_params_t* params,
                             uint32_t* out_ids, float* out_scores, size_t row_stride);

/* Writes the stored vector of `id` (dimension floats) to out. Lossy for compressed kinds (PQ);
 * L2-normalised for COSINE. */
int cfaiss_index_reconstruct(const cfaiss_index_t* index, uint32_t id, float* out);

int cfaiss_index_set_default_params(cfaiss_index_t* index, const cfaiss_search_params_t* params);
int cfaiss_index_get_default_params(const cfaiss_index_t* index, cfaiss_search_params_t* out);

/* Drops tombstoned rows by re-adding the live vectors to a fresh index of the same factory string.
 * Only for kinds whose rows reconstruct exactly and that need no training (Flat, HNSW<M>[,Flat]);
 * others return CFAISS_ERR_UNSUPPORTED (rebuild them from the source vectors). */
int cfaiss_index_compact(cfaiss_index_t* index);

/* Serializes index + id map into a malloc'ed buffer; release it with cfaiss_free. */
int cfaiss_index_serialize(const cfaiss_index_t* index, uint8_t** out_data, size_t* out_size);
int cfaiss_index_deserialize(const uint8_t* data, size_t size, cfaiss_index_t** out);
void cfaiss_free(void* pointer);

/* Sets the OpenMP thread count Faiss uses for batch work started from the calling thread. */
void cfaiss_set_thread_count(int threads);

/// Process-wide switch for the int8-copy scan of exact flat searches (on by default). Off makes those searches
/// scan the float rows (BLAS), with the same results: for measuring what the copy buys, not for production.
void cfaiss_set_quantized_scan(int enabled);

#define CFAISS_MIPS_REDUCTION_NEVER 0
#define CFAISS_MIPS_REDUCTION_ALWAYS 1
#define CFAISS_MIPS_REDUCTION_AUTOMATIC 2

/// Process-wide mode of the MIPS→L2 reduction of inner-product HNSW<M>,Flat builds (see HNSWBuild.h). AUTOMATIC (the
/// default) decides per index, once it holds 1,000 rows, from whether its longest rows dominate the other rows' nearest
/// candidates (would be hubs of a plain inner-product graph); NEVER links the raw rows under inner product, as Faiss does; ALWAYS links through the reduction. The
/// forced modes are for measuring what the reduction buys, not for production. Searches and the stored format are the
/// same in every mode. Unknown values select AUTOMATIC.
void cfaiss_set_hnsw_mips_reduction(int mode);

/// 1 when this index's HNSW build has decided to link through the MIPS→L2 reduction (automatic mode), else 0.
int cfaiss_index_links_through_mips_reduction(const cfaiss_index_t* index);

#ifdef __cplusplus
}
#endif
#endif
