// The C++ peer for IndexBench; see include/indexbench_direct.h.
#include "indexbench_direct.h"
#include "FlatDistance.h"  // the shim's kernels (Sources/CFaiss)
#include "HNSWSearch.h"    // the shim's graph search (Sources/CFaiss)

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>
#include <omp.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

using idx_t = faiss::Index::idx_t;

struct indexbench_direct {
    std::unique_ptr<faiss::IndexHNSWFlat> index;
};

namespace {
double seconds(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

extern "C" indexbench_direct_t* indexbench_direct_load(const uint8_t* data, size_t size, const char** error_out) {
    static thread_local std::string message;
    try {
        // RecDB layout: "RDBFAISS" u32 version, i32 metric, i32 dim, u32 factory length, factory,
        // u64 label count, u32 labels[], u64 faiss length, faiss bytes.
        size_t p = 8 + 4 + 4 + 4;
        uint32_t factoryLength;
        std::memcpy(&factoryLength, data + p, 4);
        p += 4 + factoryLength;
        uint64_t labels;
        std::memcpy(&labels, data + p, 8);
        p += 8 + labels * 4;
        uint64_t faissLength;
        std::memcpy(&faissLength, data + p, 8);
        p += 8;
        if (p + faissLength != size) throw std::runtime_error("not a RecDB-serialized index");
        faiss::VectorIOReader reader;
        reader.data.assign(data + p, data + p + faissLength);
        std::unique_ptr<faiss::Index> loaded(faiss::read_index(&reader));
        auto hnsw = dynamic_cast<faiss::IndexHNSWFlat*>(loaded.get());
        if (!hnsw) throw std::runtime_error("the index is not an HNSW<M>,Flat index");
        loaded.release();
        auto handle = new indexbench_direct;
        handle->index.reset(hnsw);
        return handle;
    } catch (const std::exception& e) {
        message = e.what();
        if (error_out) *error_out = message.c_str();
        return nullptr;
    }
}

extern "C" void indexbench_direct_free(indexbench_direct_t* index) { delete index; }

extern "C" double indexbench_direct_search_each(indexbench_direct_t* h, const float* queries, size_t n, size_t k,
                                                int ef_search, int64_t* labels_out) {
    omp_set_num_threads(1);
    // Faiss 1.7.3 sizes the search queue with the member efSearch (SearchParametersHNSW::efSearch alone is
    // nearly ignored), so a C++ user of this version sets the member.
    h->index->hnsw.efSearch = ef_search;
    faiss::SearchParametersHNSW params;
    params.efSearch = ef_search;
    std::vector<float> distances(k);
    const size_t d = size_t(h->index->d);
    auto start = std::chrono::steady_clock::now();
    for (size_t q = 0; q < n; q++)
        h->index->search(1, queries + q * d, idx_t(k), distances.data(), labels_out + q * k, &params);
    return seconds(start);
}

extern "C" double indexbench_direct_hnsw_loop(indexbench_direct_t* h, const float* queries, size_t n, size_t k,
                                              int ef_search, int64_t* labels_out) {
    faiss::SearchParametersHNSW params;
    params.efSearch = ef_search;
    std::vector<float> distances(k);
    const size_t d = size_t(h->index->d);
    const bool similarity = h->index->metric_type == faiss::METRIC_INNER_PRODUCT;
    faiss::VisitedTable visited(int(h->index->ntotal));
    auto* storage = dynamic_cast<faiss::IndexFlat*>(h->index->storage);
    faiss::HNSW::MinimaxHeap* candidates = nullptr;
    auto start = std::chrono::steady_clock::now();
    for (size_t q = 0; q < n; q++) {
        idx_t* labels = labels_out + q * k;
        cfaiss::FlatRowsDistance distance(storage->get_xb(), d, similarity);
        distance.set_query(queries + q * d);
        cfaiss::searchHNSWGraph(h->index->hnsw, distance, int(k), ef_search, h->index->hnsw.check_relative_distance,
                                nullptr, distances.data(), labels, visited, candidates);
    }
    double elapsed = seconds(start);
    delete candidates;
    return elapsed;
    return seconds(start);
}

extern "C" double indexbench_direct_hnsw_build(const float* x, size_t n, size_t d, int m) {
    return indexbench_direct_hnsw_build_search(x, n, d, m, nullptr, 0, 0, nullptr, 0, nullptr);
}

// The graph search the shim runs (HNSWSearch.h) over a Faiss-built graph, so recall differences are the graphs' alone:
// the top k of every query at every efSearch, into labels_out[(e * nq + q) * k ...].
static void searchGraph(faiss::IndexHNSWFlat& index, bool inner_product, const float* queries, size_t nq, size_t k,
                        const int* ef_searches, size_t nef, int64_t* labels_out) {
    std::vector<float> distances(k);
    faiss::VisitedTable visited(int(index.ntotal));
    auto* storage = dynamic_cast<faiss::IndexFlat*>(index.storage);
    faiss::HNSW::MinimaxHeap* candidates = nullptr;
    for (size_t e = 0; e < nef; e++) {
        for (size_t q = 0; q < nq; q++) {
            cfaiss::FlatRowsDistance distance(storage->get_xb(), size_t(index.d), inner_product);
            distance.set_query(queries + q * size_t(index.d));
            cfaiss::searchHNSWGraph(index.hnsw, distance, int(k), ef_searches[e], index.hnsw.check_relative_distance,
                                    nullptr, distances.data(), labels_out + (e * nq + q) * k, visited, candidates);
        }
    }
    delete candidates;
}

extern "C" double indexbench_direct_hnsw_build_search(const float* x, size_t n, size_t d, int m, const float* queries,
                                                      size_t nq, size_t k, const int* ef_searches, size_t nef,
                                                      int64_t* labels_out) {
    faiss::IndexHNSWFlat index(int(d), m);  // L2, efConstruction 40: what index_factory("HNSW32") builds
    auto start = std::chrono::steady_clock::now();
    index.add(idx_t(n), x);
    const double elapsed = seconds(start);
    if (nq == 0) return elapsed;
    searchGraph(index, false, queries, nq, k, ef_searches, nef, labels_out);
    return elapsed;
}

extern "C" double indexbench_direct_hnsw_build_bounded(const float* x, size_t n, size_t d, int m, int inner_product,
                                                       double budget_seconds, size_t chunk, size_t* rows_linked,
                                                       const float* queries, size_t nq, size_t k, const int* ef_searches,
                                                       size_t nef, int64_t* labels_out) {
    // What index_factory("HNSW32", metric) builds: IndexHNSWFlat, efConstruction 40.
    faiss::IndexHNSWFlat index(int(d), m, inner_product ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2);
    auto start = std::chrono::steady_clock::now();
    size_t added = 0;
    if (chunk == 0) chunk = n;
    // Successive IndexHNSWFlat::add calls: each links its rows into the graph of the earlier ones, as one call would
    // (Faiss draws levels per call); the budget is checked between calls.
    while (added < n && (budget_seconds <= 0 || seconds(start) < budget_seconds)) {
        const size_t count = std::min(chunk, n - added);
        index.add(idx_t(count), x + added * d);
        added += count;
    }
    const double elapsed = seconds(start);
    *rows_linked = added;
    if (nq == 0 || added < n) return elapsed;
    searchGraph(index, inner_product != 0, queries, nq, k, ef_searches, nef, labels_out);
    return elapsed;
}

extern "C" int indexbench_direct_omp_threads(void) { return omp_get_max_threads(); }
