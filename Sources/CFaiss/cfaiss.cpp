// cfaiss.cpp — implementation of cfaiss.h over Faiss 1.7.3. See the header for the contract.
//
// Design notes (why, not what):
// * Labels are insertion positions and the handle maps label <-> id. Faiss 1.7.3's IndexIDMap throws on any
//   search with parameters (so it cannot be combined with IDSelector filtering) and IndexHNSW implements
//   neither add_with_ids nor remove_ids; positional labels plus our own map work for every kind.
// * Dead rows: labelToId[label] == 0. Kinds that can delete (IVF, where labels are explicit) delete; others keep
//   the row and a selector skips it inside the search. Callers watch stored_rows - count and compact/rebuild.
// * HNSW<M>,Flat searches skip IndexHNSW::search, whose `omp parallel` region allocates a VisitedTable of
//   ntotal bytes in every OpenMP thread on every call, and whose distance functions are Debian's scalar
//   baseline-x86-64 builds. We run the same faiss::HNSW::search (same graph walk) per query with a thread-local
//   VisitedTable and the AVX2/FMA kernels of FlatDistance.h (chosen at run time). Scores may differ from
//   Faiss's own in the last float bits (different summation order); neighbours are the same walk.
// * HNSW<M>,Flat adds skip IndexHNSW::add for the same reasons (scalar distances) and link the rows with
//   HNSWBuild.h, on omp_get_max_threads() std::threads, into Faiss's own graph structures. Under inner product
//   the build links the MIPS→L2-augmented rows (HNSWBuild.h, MipsAugmentation); searches and the stored format
//   are those of a plain inner-product IndexHNSWFlat.

#include "cfaiss.h"
#include "FlatDistance.h"
#include "CompactRowScan.h"
#include "HNSWSearch.h"
#include "HNSWBuild.h"

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <omp.h>

// CBLAS from the BLAS Faiss already links (OpenBLAS on Debian), for the exact flat fast path.
extern "C" void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda,
                            const float* x, int incx, float beta, float* y, int incy);

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using idx_t = faiss::Index::idx_t;

namespace {

thread_local std::string lastError;

/// An error raised by the shim itself (as opposed to Faiss), with its return code.
struct ShimError {
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, std::string message) { throw ShimError{code, std::move(message)}; }

template <class Body>
int guarded(Body&& body) noexcept {
    try {
        body();
        return CFAISS_OK;
    } catch (const ShimError& e) {
        lastError = e.message;
        return e.code;
    } catch (const faiss::FaissException& e) {
        lastError = e.what();
        return CFAISS_ERR_FAISS;
    } catch (const std::bad_alloc&) {
        lastError = "out of memory";
        return CFAISS_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        lastError = e.what();
        return CFAISS_ERR_UNKNOWN;
    } catch (...) {
        lastError = "unknown C++ exception";
        return CFAISS_ERR_UNKNOWN;
    }
}

faiss::MetricType faissMetric(int metric) {
    return metric == CFAISS_METRIC_L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
}

/// Sets the calling thread's OpenMP team size for one scope. A single query gains nothing from a team, and
/// starting one costs more than a small HNSW search.
struct SingleThreadScope {
    int previous;
    bool active;
    explicit SingleThreadScope(bool enable) : previous(enable ? omp_get_max_threads() : 0), active(enable && previous != 1) {
        if (active) omp_set_num_threads(1);
    }
    ~SingleThreadScope() {
        if (active) omp_set_num_threads(previous);
    }
};

/// Keeps live rows that pass the caller's id filter. Runs inside Faiss's search loops, so it is branch-light.
struct LiveRowSelector final : faiss::IDSelector {
    const uint32_t* labelToId = nullptr;
    size_t labelCount = 0;
    int mode = CFAISS_FILTER_NONE;
    const uint32_t* sortedIds = nullptr;
    size_t sortedCount = 0;
    const uint64_t* bitmap = nullptr;
    size_t bitmapWords = 0;

    bool idInFilterSet(uint32_t id) const {
        if (bitmap) {
            size_t word = id >> 6;
            return word < bitmapWords && ((bitmap[word] >> (id & 63)) & 1);
        }
        return std::binary_search(sortedIds, sortedIds + sortedCount, id);
    }

    bool is_member(idx_t label) const override {
        if (label < 0 || size_t(label) >= labelCount) return false;
        uint32_t id = labelToId[label];
        if (id == 0) return false;
        switch (mode) {
            case CFAISS_FILTER_EXCLUDE: return !idInFilterSet(id);
            case CFAISS_FILTER_ALLOW_ONLY: return idInFilterSet(id);
            default: return true;
        }
    }
};

/// Reads Faiss's serialized bytes in place (VectorIOReader would copy them first).
struct MemoryReader final : faiss::IOReader {
    const uint8_t* data;
    size_t size;
    size_t position = 0;
    MemoryReader(const uint8_t* d, size_t s) : data(d), size(s) { name = "memory"; }
    size_t operator()(void* ptr, size_t itemSize, size_t items) override {
        if (itemSize == 0 || items == 0) return 0;
        size_t available = (size - position) / itemSize;
        size_t n = std::min(items, available);
        std::memcpy(ptr, data + position, n * itemSize);
        position += n * itemSize;
        return n;
    }
};

/// Temporarily points fd 2 at a temporary file and returns what was written there. Faiss prints its training
/// warnings with fprintf(stderr); they belong in the caller's hands, not on a server's terminal. The
/// redirection is process-wide, so it is serialised and kept as short as the training call.
std::mutex stderrCaptureMutex;

template <class Body>
std::string captureStandardError(Body&& body) {
    std::lock_guard<std::mutex> lock(stderrCaptureMutex);
    std::fflush(stderr);
    FILE* sink = std::tmpfile();
    int saved = sink ? dup(2) : -1;
    if (!sink || saved < 0 || dup2(fileno(sink), 2) < 0) {
        // Cannot capture: run uncaptured rather than fail the training.
        if (saved >= 0) close(saved);
        if (sink) std::fclose(sink);
        body();
        return {};
    }
    auto restore = [&]() {
        std::fflush(stderr);
        dup2(saved, 2);
        close(saved);
    };
    try {
        body();
    } catch (...) {
        restore();
        std::fclose(sink);
        throw;
    }
    restore();
    std::string text;
    std::fseek(sink, 0, SEEK_SET);
    char buffer[4096];
    size_t got;
    while ((got = std::fread(buffer, 1, sizeof buffer, sink)) > 0) text.append(buffer, got);
    std::fclose(sink);
    return text;
}

// Serialization layout (little-endian, as on every platform RecDB targets):
//   "RDBFAISS" | u32 format version | i32 metric | i32 dimension | u32 factory length | factory bytes
//   | u64 label count | u32 labelToId[label count] | u64 faiss length | faiss bytes (faiss::write_index)
constexpr char kMagic[8] = {'R', 'D', 'B', 'F', 'A', 'I', 'S', 'S'};
constexpr uint32_t kFormatVersion = 1;

/// See cfaiss_set_quantized_scan.
std::atomic<bool> quantizedScanEnabled{true};

/// See cfaiss_set_hnsw_mips_reduction: CFAISS_MIPS_REDUCTION_{NEVER, ALWAYS, AUTOMATIC}.
std::atomic<int> mipsReductionMode{CFAISS_MIPS_REDUCTION_AUTOMATIC};

/// Allow-lists up to this size are scored exactly instead of filtering a graph/IVF search (see cfaiss.h).
constexpr size_t kExactAllowListLimit = CFAISS_EXACT_ALLOW_LIST_LIMIT;

}  // namespace

struct cfaiss_index {
    std::unique_ptr<faiss::Index> index;
    std::string factory;
    int metric = CFAISS_METRIC_INNER_PRODUCT;
    int dimension = 0;

    std::vector<uint32_t> labelToId;  // 0 = dead row (or a label that was deleted from Faiss)
    std::vector<int64_t> idToLabel;   // -1 = absent; indexed by id
    int64_t liveCount = 0;
    int64_t deadRowsInFaiss = 0;  // tombstoned rows Faiss still scans

    // Views into `index`, found once (dynamic_cast is not free on the search path).
    faiss::Index* core = nullptr;  // index with pre-transforms unwrapped
    faiss::IndexHNSW* hnsw = nullptr;
    faiss::IndexHNSWFlat* hnswFlat = nullptr;
    bool hnswDirect = false;  // searched by HNSWSearch.h rather than IndexHNSW::search
    faiss::IndexFlat* flat = nullptr;  // a flat index or the flat storage of HNSWFlat: exact rows
    faiss::IndexIVF* ivf = nullptr;
    bool deletesPhysically = false;

    std::string trainingLog;

    // int8 copy of the rows of a plain flat similarity index, for exact scans (see CompactRowScan.h).
    cfaiss::CompactRows compactRows;

    // HNSW<M>,Flat under inner product: the MIPS→L2 coordinates its build links with (see HNSWBuild.h). Not
    // serialized: recomputed from the stored rows by the first add after a load.
    cfaiss::MipsAugmentation mips;
    // Whether this handle's inner-product HNSW build links through the reduction: -1 until decided (automatic mode
    // decides once enough rows are stored to tell, see cfaiss::longRowShareOfNearestCandidates), then 0 or 1 for
    // the handle's life. Not serialized: a loaded index decides again at its first add, from all its rows.
    int mipsDecision = -1;

    bool isPlainFlatSimilarity() const { return flat && core == index.get() && !hnsw && isSimilarity(); }

    /// Turns one query's k Faiss labels into ids, packing valid results at the front (0 and score 0 after them).
    void writeIds(size_t k, const idx_t* labels, uint32_t* ids, float* scores) const {
        size_t written = 0;
        for (size_t j = 0; j < k; j++) {
            const idx_t label = labels[j];
            const uint32_t id = (label >= 0 && size_t(label) < labelToId.size()) ? labelToId[size_t(label)] : 0;
            if (id == 0) continue;
            ids[written] = id;
            scores[written] = scores[j];
            written++;
        }
        for (; written < k; written++) {
            ids[written] = 0;
            scores[written] = 0;
        }
    }

    bool scansCompactRows() const {
        return isPlainFlatSimilarity() && compactRows.usable && compactRows.rows == size_t(index->ntotal) &&
               quantizedScanEnabled.load(std::memory_order_relaxed);
    }

    /// Brings the int8 copy up to the float rows. Called by every call that adds rows (they hold the
    /// wrapper's write lock); rows are only ever appended between compactions, which build a fresh handle.
    void syncCompactRows() {
        if (!isPlainFlatSimilarity()) return;
        if (compactRows.dimension != size_t(dimension) || compactRows.rows > size_t(index->ntotal))
            compactRows.reset(size_t(dimension));
        compactRows.append(flat->get_xb(), size_t(index->ntotal));
    }

    void attach(faiss::Index* created) {
        index.reset(created);
        core = created;
        while (auto pre = dynamic_cast<faiss::IndexPreTransform*>(core)) core = pre->index;
        hnsw = dynamic_cast<faiss::IndexHNSW*>(core);
        hnswFlat = dynamic_cast<faiss::IndexHNSWFlat*>(core);
        // Our graph search feeds raw queries to the graph, so only an HNSW without pre-transform qualifies; the
        // two-level and upper-beam variants keep Faiss's own search.
        hnswDirect = core == created && hnsw && hnsw->storage && hnsw->hnsw.upper_beam == 1 &&
                     !dynamic_cast<faiss::IndexHNSW2Level*>(core);
        ivf = dynamic_cast<faiss::IndexIVF*>(core);
        flat = nullptr;
        if (core == created) {
            if (auto f = dynamic_cast<faiss::IndexFlat*>(core)) flat = f;
            if (hnswFlat) flat = dynamic_cast<faiss::IndexFlat*>(hnswFlat->storage);
        }
        deletesPhysically = ivf != nullptr;
        compactRows.reset(size_t(dimension));
        mips = cfaiss::MipsAugmentation();
        mipsDecision = -1;
    }

    bool isSimilarity() const { return metric != CFAISS_METRIC_L2; }

    int64_t labelOf(uint32_t id) const {
        return id < idToLabel.size() ? idToLabel[id] : -1;
    }

    void checkDimensionCount(size_t n) const {
        if (n > size_t(INT64_MAX) / size_t(dimension)) fail(CFAISS_ERR_INVALID_ARGUMENT, "too many vectors");
    }

    /// Returns the vectors Faiss should see: the input, or a normalised copy for cosine.
    const float* prepared(size_t n, const float* x, std::vector<float>& scratch) const {
        if (metric != CFAISS_METRIC_COSINE) return x;
        scratch.assign(x, x + n * size_t(dimension));
        // Not faiss::fvec_renorm_L2: it opens an OpenMP parallel region even for one query, and on a busy
        // machine the spinning second thread cost 100x (measured 129 vs 16,500 queries/s on Beauty).
        const size_t d = size_t(dimension);
        for (size_t r = 0; r < n; r++) {
            float* row = scratch.data() + r * d;
            float norm = 0;
            for (size_t j = 0; j < d; j++) norm += row[j] * row[j];
            if (norm > 0) {
                const float inv = 1.0f / std::sqrt(norm);
                for (size_t j = 0; j < d; j++) row[j] *= inv;
            }
        }
        return scratch.data();
    }
};

namespace {

/// Whether the next inner-product HNSW add links through the MIPS→L2 reduction (see cfaiss_set_hnsw_mips_reduction).
bool linksThroughMipsReduction(cfaiss_index* h, size_t ntotal) {
    switch (mipsReductionMode.load(std::memory_order_relaxed)) {
    case CFAISS_MIPS_REDUCTION_NEVER: return false;
    case CFAISS_MIPS_REDUCTION_ALWAYS: return true;
    default: break;
    }
    if (h->mipsDecision < 0) {
        // Below 1,000 rows: link them plainly and decide at a later add, from more rows (a small graph's hubs
        // cost little, and the decision holds for the handle's life).
        if (ntotal < 1000) return false;
        h->mipsDecision = cfaiss::longRowShareOfNearestCandidates(h->flat->get_xb(), size_t(h->dimension), ntotal) >
                                  cfaiss::kHubShareForMipsReduction ? 1 : 0;
    }
    return h->mipsDecision == 1;
}

/// Appends n rows to the index: HNSW<M>,Flat through HNSWBuild.h, every other kind through Faiss's add.
void addRows(cfaiss_index* h, size_t n, const float* x) {
    if (!(h->hnswFlat && h->hnswDirect && h->flat)) {
        h->index->add(idx_t(n), x);
        return;
    }
    faiss::IndexHNSW& index = *h->hnsw;
    const size_t n0 = size_t(index.ntotal);
    const bool presetLevels = index.hnsw.levels.size() == n0 + n;
    index.storage->add(idx_t(n), x);
    index.ntotal = index.storage->ntotal;
    // Inner product links the augmented rows under L2 (see MipsAugmentation); cosine rows all have norm 1, where
    // the augmentation would add nothing.
    const float* extra = nullptr;
    if (h->metric == CFAISS_METRIC_INNER_PRODUCT && linksThroughMipsReduction(h, size_t(index.ntotal)) &&
        h->mips.update(h->flat->get_xb(), size_t(h->dimension), size_t(index.ntotal)))
        extra = h->mips.extra.data();
    cfaiss::HNSWBuilder builder(index.hnsw, h->flat->get_xb(), size_t(h->dimension), h->isSimilarity(), extra);
    builder.add(n0, n, std::max(1, omp_get_max_threads()), presetLevels);
}

}  // namespace

extern "C" {

const char* cfaiss_last_error(void) { return lastError.c_str(); }

int cfaiss_index_create(const char* factory, int dimension, int metric, cfaiss_index_t** out) {
    return guarded([&] {
        if (!out) fail(CFAISS_ERR_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        if (!factory) fail(CFAISS_ERR_INVALID_ARGUMENT, "factory string is NULL");
        if (dimension <= 0) fail(CFAISS_ERR_INVALID_ARGUMENT, "dimension must be positive, got " + std::to_string(dimension));
        if (metric < CFAISS_METRIC_INNER_PRODUCT || metric > CFAISS_METRIC_COSINE)
            fail(CFAISS_ERR_INVALID_ARGUMENT, "unknown metric " + std::to_string(metric));
        std::string description(factory);
        if (description.find("IDMap") != std::string::npos)
            fail(CFAISS_ERR_INVALID_ARGUMENT,
                 "factory string '" + description + "': IDMap is not supported (ids are managed by the wrapper, and "
                 "Faiss 1.7.3's IndexIDMap cannot search with parameters)");
        auto handle = std::make_unique<cfaiss_index>();
        handle->factory = description;
        handle->metric = metric;
        handle->dimension = dimension;
        handle->attach(faiss::index_factory(dimension, factory, faissMetric(metric)));
        if (handle->ivf) handle->ivf->set_direct_map_type(faiss::DirectMap::Hashtable);  // for reconstruct
        // NOTE: Faiss's factory turns on polysemous training for PQ kinds. It only serves polysemous (Hamming
        // pre-filtered) search, which this binding never enables, and it dominates training time (IVF16,PQ4 on
        // 4,000 x 16 floats: 30 s with it, < 0.2 s without). Equivalent to writing "PQ16np".
        if (auto pq = dynamic_cast<faiss::IndexPQ*>(handle->core)) pq->do_polysemous_training = false;
        if (auto ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(handle->core)) ivfpq->do_polysemous_training = false;
        if (handle->hnsw)
            if (auto pq = dynamic_cast<faiss::IndexPQ*>(handle->hnsw->storage)) pq->do_polysemous_training = false;
        *out = handle.release();
    });
}

void cfaiss_index_free(cfaiss_index_t* index) { delete index; }

int cfaiss_index_dimension(const cfaiss_index_t* h) { return h->dimension; }
int cfaiss_index_metric(const cfaiss_index_t* h) { return h->metric; }
int cfaiss_index_is_trained(const cfaiss_index_t* h) { return h->index->is_trained ? 1 : 0; }
const char* cfaiss_index_factory(const cfaiss_index_t* h) { return h->factory.c_str(); }
int64_t cfaiss_index_count(const cfaiss_index_t* h) { return h->liveCount; }
int64_t cfaiss_index_stored_rows(const cfaiss_index_t* h) { return h->index->ntotal; }
int cfaiss_index_contains(const cfaiss_index_t* h, uint32_t id) { return id != 0 && h->labelOf(id) >= 0; }
int cfaiss_index_scans_quantized_copy(const cfaiss_index_t* h) { return h->scansCompactRows() ? 1 : 0; }

int cfaiss_index_live_ids(const cfaiss_index_t* h, uint32_t* out_ids, size_t capacity, size_t* out_count) {
    return guarded([&] {
        size_t written = 0, total = 0;
        for (size_t id = 1; id < h->idToLabel.size(); id++) {
            if (h->idToLabel[id] < 0) continue;
            if (written < capacity && out_ids) out_ids[written++] = uint32_t(id);
            total++;
        }
        if (out_count) *out_count = total;
    });
}

int cfaiss_index_train(cfaiss_index_t* h, size_t n, const float* vectors) {
    return guarded([&] {
        if (n == 0 || !vectors) fail(CFAISS_ERR_INVALID_ARGUMENT, "training needs at least one vector");
        h->checkDimensionCount(n);
        std::vector<float> scratch;
        const float* x = h->prepared(n, vectors, scratch);
        h->trainingLog = captureStandardError([&] { h->index->train(idx_t(n), x); });
    });
}

const char* cfaiss_index_training_log(const cfaiss_index_t* h) { return h->trainingLog.c_str(); }

int cfaiss_index_add(cfaiss_index_t* h, size_t n, const float* vectors, const uint32_t* ids) {
    return guarded([&] {
        if (n == 0) return;
        if (!vectors || !ids) fail(CFAISS_ERR_INVALID_ARGUMENT, "vectors or ids is NULL");
        h->checkDimensionCount(n);
        if (!h->index->is_trained)
            fail(CFAISS_ERR_NOT_TRAINED, "index '" + h->factory + "' must be trained before vectors are added");
        uint32_t maxId = 0;
        for (size_t i = 0; i < n; i++) {
            if (ids[i] == 0) fail(CFAISS_ERR_INVALID_ARGUMENT, "id 0 is reserved and cannot be added");
            maxId = std::max(maxId, ids[i]);
        }
        // Within one call the last occurrence of an id wins: keep rows whose id does not appear again later.
        std::vector<int64_t> lastRow(size_t(maxId) + 1, -1);
        for (size_t i = 0; i < n; i++) lastRow[ids[i]] = int64_t(i);
        std::vector<size_t> keep;
        keep.reserve(n);
        for (size_t i = 0; i < n; i++)
            if (lastRow[ids[i]] == int64_t(i)) keep.push_back(i);
        const size_t d = size_t(h->dimension);
        std::vector<float> compacted;
        const float* x = vectors;
        if (keep.size() != n) {
            compacted.resize(keep.size() * d);
            for (size_t j = 0; j < keep.size(); j++) std::memcpy(&compacted[j * d], vectors + keep[j] * d, d * sizeof(float));
            x = compacted.data();
        }
        const size_t m = keep.size();
        std::vector<float> normalised;
        x = h->prepared(m, x, normalised);

        // Old rows of ids being replaced.
        std::vector<idx_t> replacedLabels;
        for (size_t j = 0; j < m; j++) {
            int64_t old = h->labelOf(ids[keep[j]]);
            if (old >= 0) replacedLabels.push_back(old);
        }

        const idx_t firstLabel = idx_t(h->labelToId.size());
        // Reserve first so that the bookkeeping after Faiss's (fallible) add cannot throw.
        h->labelToId.reserve(h->labelToId.size() + m);
        if (h->idToLabel.size() <= maxId) h->idToLabel.resize(size_t(maxId) + 1, -1);

        if (h->deletesPhysically) {
            std::vector<idx_t> labels(m);
            for (size_t j = 0; j < m; j++) labels[j] = firstLabel + idx_t(j);
            h->index->add_with_ids(idx_t(m), x, labels.data());
            if (!replacedLabels.empty()) {
                // IVF's hashtable direct map accepts only IDSelectorArray for removal.
                faiss::IDSelectorArray selector(replacedLabels.size(), replacedLabels.data());
                h->index->remove_ids(selector);
            }
        } else {
            if (h->index->ntotal != firstLabel)
                fail(CFAISS_ERR_UNKNOWN, "internal error: Faiss row count does not match the label map");
            addRows(h, m, x);
            h->deadRowsInFaiss += int64_t(replacedLabels.size());
        }
        for (idx_t label : replacedLabels) h->labelToId[size_t(label)] = 0;
        h->liveCount -= int64_t(replacedLabels.size());
        for (size_t j = 0; j < m; j++) {
            uint32_t id = ids[keep[j]];
            h->labelToId.push_back(id);
            h->idToLabel[id] = firstLabel + idx_t(j);
        }
        h->liveCount += int64_t(m);
        h->syncCompactRows();
    });
}

int cfaiss_index_remove(cfaiss_index_t* h, size_t n, const uint32_t* ids, size_t* out_removed) {
    return guarded([&] {
        if (out_removed) *out_removed = 0;
        if (n == 0) return;
        if (!ids) fail(CFAISS_ERR_INVALID_ARGUMENT, "ids is NULL");
        std::vector<idx_t> labels;
        for (size_t i = 0; i < n; i++) {
            int64_t label = h->labelOf(ids[i]);
            if (label >= 0 && ids[i] != 0) labels.push_back(label);
        }
        std::sort(labels.begin(), labels.end());
        labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
        if (h->deletesPhysically && !labels.empty()) {
            faiss::IDSelectorArray selector(labels.size(), labels.data());
            h->index->remove_ids(selector);
        } else {
            h->deadRowsInFaiss += int64_t(labels.size());
        }
        for (idx_t label : labels) {
            uint32_t id = h->labelToId[size_t(label)];
            h->idToLabel[id] = -1;
            h->labelToId[size_t(label)] = 0;
        }
        h->liveCount -= int64_t(labels.size());
        if (out_removed) *out_removed = labels.size();
    });
}

namespace {

/// Exact top-k over an explicit allow-list. Used when the allow-list is small: a graph or IVF search restricted
/// to a few ids walks mostly non-members and may return fewer than k (IVF: only the probed lists), while scoring
/// the allowed rows directly is exact and cheap. Rows come straight from flat storage, otherwise from
/// `reconstruct` (the decoded approximation for PQ kinds, in the original space for pre-transformed kinds).
void searchAllowListExactly(const cfaiss_index* h, const float* query, size_t k, const cfaiss_filter_t& filter,
                            uint32_t* outIds, float* outScores) {
    thread_local std::vector<float> scores;
    thread_local std::vector<idx_t> labels;
    thread_local std::vector<float> decoded;
    const size_t d = size_t(h->dimension);
    const float* rows = h->flat ? h->flat->get_xb() : nullptr;
    if (!rows) decoded.resize(d);
    const bool similarity = h->isSimilarity();
    const cfaiss::DistanceKernel kernel = similarity ? cfaiss::innerProductKernel() : cfaiss::squaredL2Kernel();
    // Keep a heap of the k best: a min-heap on similarity, a max-heap on distance.
    scores.resize(k);
    labels.resize(k);
    if (similarity) faiss::minheap_heapify(k, scores.data(), labels.data());
    else faiss::maxheap_heapify(k, scores.data(), labels.data());
    for (size_t i = 0; i < filter.count; i++) {
        int64_t label = h->labelOf(filter.sorted_ids[i]);
        if (label < 0) continue;
        const float* row;
        if (rows) {
            row = rows + size_t(label) * d;
        } else {
            h->index->reconstruct(idx_t(label), decoded.data());
            row = decoded.data();
        }
        if (similarity) {
            float s = kernel(query, row, d);
            if (s > scores[0]) faiss::minheap_replace_top(k, scores.data(), labels.data(), s, label);
        } else {
            float s = kernel(query, row, d);
            if (s < scores[0]) faiss::maxheap_replace_top(k, scores.data(), labels.data(), s, label);
        }
    }
    if (similarity) faiss::minheap_reorder(k, scores.data(), labels.data());
    else faiss::maxheap_reorder(k, scores.data(), labels.data());
    for (size_t j = 0; j < k; j++) {
        outIds[j] = labels[j] >= 0 ? h->labelToId[size_t(labels[j])] : 0;
        outScores[j] = labels[j] >= 0 ? scores[j] : 0;
    }
}

/// Exact search of a plain flat index under a similarity metric, scored with BLAS.
///
/// Why: Debian's libfaiss 1.7.3 is built without SIMD, and with an `IDSelector` (any filter, or tombstones)
/// Faiss scores a flat index one row at a time with its scalar reference inner product (measured: 56% of a
/// whole recommendation's time on 12,101 × 64 rows). `cblas_sgemv` over blocks of stored rows plus a
/// filtered min-heap gives the same top-k several times faster. Rows failing the selector are only
/// checked when they would enter the heap.
void searchFlatWithBLAS(const cfaiss_index* h, size_t n, const float* queries, size_t k, const LiveRowSelector* sel,
                        float* outScores, idx_t* outLabels) {
    thread_local std::vector<float> scores;
    const size_t d = size_t(h->dimension);
    const size_t rows = size_t(h->index->ntotal);
    const float* xb = h->flat->get_xb();
    const size_t block = 8192;
    scores.resize(std::min(block, std::max<size_t>(rows, 1)));
    for (size_t q = 0; q < n; q++) {
        float* heapScores = outScores + q * k;
        idx_t* heapLabels = outLabels + q * k;
        faiss::minheap_heapify(k, heapScores, heapLabels);
        const float* x = queries + q * d;
        for (size_t start = 0; start < rows; start += block) {
            const size_t m = std::min(block, rows - start);
            cblas_sgemv(101 /* CblasRowMajor */, 111 /* CblasNoTrans */, int(m), int(d), 1.0f, xb + start * d, int(d),
                        x, 1, 0.0f, scores.data(), 1);
            for (size_t i = 0; i < m; i++) {
                const float s = scores[i];
                if (!(s > heapScores[0])) continue;
                const idx_t label = idx_t(start + i);
                if (sel && !sel->is_member(label)) continue;
                faiss::minheap_replace_top(k, heapScores, heapLabels, s, label);
            }
        }
        faiss::minheap_reorder(k, heapScores, heapLabels);
    }
}

/// Queries on a plain flat similarity index through its int8 copy: approximate scores with error bounds, then
/// exact float32 re-scoring of the rows whose bound interval reaches the k-th best lower bound (see
/// CompactRowScan.h for the bound). The selector is consulted only for rows that could enter a heap.
///
/// `searchFlatCompact` runs one query; `searchFlatCompactGroup<G>` runs G queries (each with its own k and
/// selector) in one pass over the int8 rows. A query gets the same candidates, thresholds and results either
/// way: the scan visits its rows in the same order with the same approximate scores.
extern "C++" {  // templates inside the file's extern "C" block
struct CompactSearch {
    cfaiss::CompactQuery query;
    std::vector<float> lowerScores;
    std::vector<idx_t> lowerLabels;
    struct Candidate {
        uint32_t row;
        float upper;
    };
    std::vector<Candidate> candidates;
    float threshold = 0;
    size_t k = 0;
    const LiveRowSelector* sel = nullptr;

    /// Pass 1's start: the k best lower bounds among permitted rows give a threshold no row of the true
    /// top-k is below; rows whose upper bound reached the threshold when they were seen are the candidates.
    void begin(const cfaiss::CompactRows& compact, const float* x, size_t kq, const LiveRowSelector* selector) {
        compact.prepare(x, query);
        k = kq;
        sel = selector;
        lowerScores.resize(k);
        lowerLabels.resize(k);
        faiss::minheap_heapify(k, lowerScores.data(), lowerLabels.data());
        candidates.clear();
        threshold = lowerScores[0];
    }

    void visit(size_t row, float s, float bound) {
        candidates.push_back({uint32_t(row), s + bound});
        const float lower = s - bound;
        if (lower > threshold && (!sel || sel->is_member(idx_t(row)))) {
            faiss::minheap_replace_top(k, lowerScores.data(), lowerLabels.data(), lower, idx_t(row));
            threshold = lowerScores[0];
        }
    }

    /// Pass 2: exact scores of the candidates still in reach.
    void finish(const cfaiss_index* h, const float* x, float* outScores, idx_t* outLabels) const {
        const size_t d = size_t(h->dimension);
        const float* xb = h->flat->get_xb();
        const cfaiss::DistanceKernel kernel = cfaiss::innerProductKernel();
        faiss::minheap_heapify(k, outScores, outLabels);
        for (const Candidate& c : candidates) {
            if (c.upper < threshold) continue;
            if (sel && !sel->is_member(idx_t(c.row))) continue;
            const float s = kernel(x, xb + size_t(c.row) * d, d);
            if (s > outScores[0]) faiss::minheap_replace_top(k, outScores, outLabels, s, idx_t(c.row));
        }
        faiss::minheap_reorder(k, outScores, outLabels);
    }
};

void searchFlatCompact(const cfaiss_index* h, const float* query, size_t k, const LiveRowSelector* sel,
                       float* outScores, idx_t* outLabels) {
    thread_local CompactSearch search;
    search.begin(h->compactRows, query, k, sel);
    h->compactRows.scan(search.query, search.threshold, [&](size_t row, float s, float bound) { search.visit(row, s, bound); });
    search.finish(h, query, outScores, outLabels);
}

template <int G>
void searchFlatCompactGroup(const cfaiss_index* h, const float* const* queries, const size_t* ks, const LiveRowSelector* const* sels,
                            float* const* outScores, idx_t* const* outLabels) {
    thread_local CompactSearch searches[G];
    const cfaiss::CompactQuery* prepared[G];
    float thresholds[G];
    for (int g = 0; g < G; g++) {
        searches[g].begin(h->compactRows, queries[g], ks[g], sels[g]);
        prepared[g] = &searches[g].query;
        thresholds[g] = searches[g].threshold;
    }
    // The scan keeps the thresholds in its own array (raised through `visit`), as the single scan keeps one.
    h->compactRows.scanGroup<G>(prepared, thresholds, [&](int g, size_t row, float s, float bound) {
        CompactSearch& search = searches[g];
        search.threshold = thresholds[g];
        search.visit(row, s, bound);
        thresholds[g] = search.threshold;
    });
    for (int g = 0; g < G; g++) searches[g].finish(h, queries[g], outScores[g], outLabels[g]);
}

/// The selector of `h`'s live rows that `filter` (of a known `mode`; ids checked by the caller) lets through.
LiveRowSelector liveRowSelector(const cfaiss_index* h, int mode, const cfaiss_filter_t* filter) {
    LiveRowSelector selector;
    selector.labelToId = h->labelToId.data();
    selector.labelCount = h->labelToId.size();
    selector.mode = mode;
    if (mode != CFAISS_FILTER_NONE) {
        selector.sortedIds = filter->sorted_ids;
        selector.sortedCount = filter->count;
        selector.bitmap = filter->bitmap;
        selector.bitmapWords = filter->bitmap_words;
    }
    return selector;
}

/// The queries of one `cfaiss_index_search_each` call that go through the int8 scan together, G at a time.
struct CompactGroupRun {
    const cfaiss_index* h;
    const float* x;                     // the (normalised) queries, all n of them
    const size_t* ks;
    const size_t* grouped;              // which queries, in order
    const LiveRowSelector* selectors;   // by query
    float* outScores;                   // by query, row_stride apart
    idx_t* labels;                      // by position in `grouped`, row_stride apart
    size_t rowStride;

    template <int G>
    void search(size_t first) const {
        const size_t d = size_t(h->dimension);
        const float* qx[G];
        size_t qk[G];
        const LiveRowSelector* qs[G];
        float* scores[G];
        idx_t* qlabels[G];
        for (int g = 0; g < G; g++) {
            const size_t q = grouped[first + size_t(g)];
            qx[g] = x + q * d;
            qk[g] = ks[q];
            const bool needsSelector = selectors[q].mode != CFAISS_FILTER_NONE || h->deadRowsInFaiss > 0;
            qs[g] = needsSelector ? &selectors[q] : nullptr;
            scores[g] = outScores + q * rowStride;
            qlabels[g] = labels + (first + size_t(g)) * rowStride;
        }
        searchFlatCompactGroup<G>(h, qx, qk, qs, scores, qlabels);
    }
};

}  // extern "C++"

/// One query on a plain Flat index, scanning every row with the kernels of FlatDistance.h. Faiss would use its
/// scalar loops for fewer than 20 queries (BLAS only from 20 on), which is what a single query hits.
/// Writes Faiss-style results: labels (-1 when fewer than k rows pass) and scores, best first.
void searchFlatScan(const cfaiss_index* h, const float* query, size_t k, const faiss::IDSelector* selector,
                    float* scores, idx_t* labels) {
    const size_t d = size_t(h->dimension), rows = size_t(h->index->ntotal);
    const float* data = h->flat->get_xb();
    const bool similarity = h->isSimilarity();
    const cfaiss::DistanceKernel kernel = similarity ? cfaiss::innerProductKernel() : cfaiss::squaredL2Kernel();
    if (similarity) faiss::minheap_heapify(k, scores, labels);
    else faiss::maxheap_heapify(k, scores, labels);
    for (size_t row = 0; row < rows; row++) {
        if (selector && !selector->is_member(idx_t(row))) continue;
        float s = kernel(query, data + row * d, d);
        if (similarity) {
            if (s > scores[0]) faiss::minheap_replace_top(k, scores, labels, s, idx_t(row));
        } else if (s < scores[0]) {
            faiss::maxheap_replace_top(k, scores, labels, s, idx_t(row));
        }
    }
    if (similarity) faiss::minheap_reorder(k, scores, labels);
    else faiss::maxheap_reorder(k, scores, labels);
}

/// Negates another computer's distances: the graph search minimises, so similarity metrics are searched
/// negated (as Faiss 1.7.3's IndexHNSW does internally).
struct NegatedDistance final : faiss::DistanceComputer {
    faiss::DistanceComputer* base;
    explicit NegatedDistance(faiss::DistanceComputer* b) : base(b) {}
    void set_query(const float* x) override { base->set_query(x); }
    float operator()(idx_t i) override { return -(*base)(i); }
    float symmetric_dis(idx_t i, idx_t j) override { return -base->symmetric_dis(i, j); }
};

/// One query on an HNSW index, on the calling thread (see the file header and HNSWSearch.h). Flat storage is
/// scored with the kernels of FlatDistance.h; compressed storage (PQ, SQ) with its own Faiss distance computer.
void searchHNSW(const cfaiss_index* h, const float* query, size_t k, const faiss::SearchParametersHNSW& params,
                float* distances, idx_t* labels) {
    struct Scratch {
        std::unique_ptr<faiss::VisitedTable> visited;
        faiss::HNSW::MinimaxHeap* candidates = nullptr;
        ~Scratch() { delete candidates; }
    };
    thread_local Scratch scratch;
    const size_t rows = size_t(h->index->ntotal);
    if (!scratch.visited || scratch.visited->visited.size() < rows)
        scratch.visited.reset(new faiss::VisitedTable(int(std::max<size_t>(rows + rows / 4, 1024))));
    auto run = [&](auto& distance) {
        distance.set_query(query);
        cfaiss::searchHNSWGraph(h->hnsw->hnsw, distance, int(k), params.efSearch, params.check_relative_distance,
                                params.sel, distances, labels, *scratch.visited, scratch.candidates);
    };
    if (h->flat) {
        cfaiss::FlatRowsDistance distance(h->flat->get_xb(), size_t(h->dimension), h->isSimilarity());
        run(distance);
    } else {
        std::unique_ptr<faiss::DistanceComputer> base(h->hnsw->storage->get_distance_computer());
        NegatedDistance negated(base.get());
        if (h->isSimilarity()) run(negated);
        else run(*base);
    }
    if (h->isSimilarity())
        for (size_t j = 0; j < k; j++) distances[j] = -distances[j];
}

/// Many queries on an HNSW index: split over up to omp_get_max_threads() std::threads (each with its own
/// thread-local VisitedTable).
void searchHNSWBatch(const cfaiss_index* h, size_t n, const float* queries, size_t k,
                         const faiss::SearchParametersHNSW& params, float* distances, idx_t* labels) {
    const size_t d = size_t(h->dimension);
    auto runRange = [&](size_t from, size_t to) {
        for (size_t q = from; q < to; q++) searchHNSW(h, queries + q * d, k, params, distances + q * k, labels + q * k);
    };
    size_t threads = std::min<size_t>(size_t(std::max(1, omp_get_max_threads())), n / 32);
    if (threads <= 1) {
        runRange(0, n);
        return;
    }
    std::vector<std::thread> workers;
    std::vector<std::exception_ptr> errors(threads);
    const size_t chunk = (n + threads - 1) / threads;
    for (size_t t = 0; t < threads; t++) {
        workers.emplace_back([&, t] {
            try {
                runRange(t * chunk, std::min(n, (t + 1) * chunk));
            } catch (...) {
                errors[t] = std::current_exception();
            }
        });
    }
    for (auto& worker : workers) worker.join();
    for (auto& error : errors)
        if (error) std::rethrow_exception(error);
}

}  // namespace

int cfaiss_index_search(const cfaiss_index_t* h, size_t n, const float* queries, size_t k,
                        const cfaiss_filter_t* filter, const cfaiss_search_params_t* params,
                        uint32_t* out_ids, float* out_scores) {
    return guarded([&] {
        if (n == 0) return;
        if (!queries || !out_ids || !out_scores) fail(CFAISS_ERR_INVALID_ARGUMENT, "queries or outputs are NULL");
        if (k == 0) fail(CFAISS_ERR_INVALID_ARGUMENT, "k must be positive");
        if (!h->index->is_trained) fail(CFAISS_ERR_NOT_TRAINED, "index '" + h->factory + "' is not trained");
        h->checkDimensionCount(n);
        if (n > size_t(INT64_MAX) / k) fail(CFAISS_ERR_INVALID_ARGUMENT, "n * k overflows");
        const size_t d = size_t(h->dimension);
        int mode = filter ? filter->mode : CFAISS_FILTER_NONE;
        if (mode < CFAISS_FILTER_NONE || mode > CFAISS_FILTER_ALLOW_ONLY) fail(CFAISS_ERR_INVALID_ARGUMENT, "unknown filter mode");
        if (mode != CFAISS_FILTER_NONE && filter->count > 0 && !filter->sorted_ids)
            fail(CFAISS_ERR_INVALID_ARGUMENT, "filter ids are NULL");

        thread_local std::vector<float> normalised;
        const float* x = h->prepared(n, queries, normalised);

        // Nothing can match: an empty allow-list, or an empty index.
        if ((mode == CFAISS_FILTER_ALLOW_ONLY && filter->count == 0) || h->liveCount == 0) {
            std::fill(out_ids, out_ids + n * k, 0u);
            std::fill(out_scores, out_scores + n * k, 0.0f);
            return;
        }

        // Small explicit allow-lists: score them directly.
        if (mode == CFAISS_FILTER_ALLOW_ONLY && filter->sorted_ids && filter->count <= kExactAllowListLimit) {
            for (size_t q = 0; q < n; q++) searchAllowListExactly(h, x + q * d, k, *filter, out_ids + q * k, out_scores + q * k);
            return;
        }

        LiveRowSelector selector;
        const bool needsSelector = mode != CFAISS_FILTER_NONE || h->deadRowsInFaiss > 0;
        if (needsSelector) selector = liveRowSelector(h, mode, filter);
        // SearchParameters::sel is non-const in Faiss 1.7.3, though searches only call is_member.
        faiss::IDSelector* sel = needsSelector ? &selector : nullptr;
        const int efSearch = params && params->ef_search > 0 ? params->ef_search : 0;
        const int nprobe = params && params->nprobe > 0 ? params->nprobe : 0;

        faiss::SearchParametersHNSW hnswParams;
        faiss::SearchParametersIVF ivfParams;
        faiss::SearchParameters plainParams;
        const faiss::SearchParameters* searchParams = nullptr;
        if (h->hnsw) {
            hnswParams.efSearch = efSearch > 0 ? efSearch : h->hnsw->hnsw.efSearch;
            hnswParams.check_relative_distance = h->hnsw->hnsw.check_relative_distance;
            hnswParams.sel = sel;
            if (sel || efSearch > 0) searchParams = &hnswParams;
        } else if (h->ivf) {
            ivfParams.nprobe = size_t(nprobe > 0 ? nprobe : int(h->ivf->nprobe));
            ivfParams.max_codes = h->ivf->max_codes;
            ivfParams.sel = sel;
            if (sel || nprobe > 0) searchParams = &ivfParams;
        } else if (sel) {
            plainParams.sel = sel;
            searchParams = &plainParams;
        }

        thread_local std::vector<idx_t> labels;
        labels.resize(n * k);
        const bool plainFlatSimilarity = h->isPlainFlatSimilarity();
        if (h->hnswDirect) {
            if (n == 1) searchHNSW(h, x, k, hnswParams, out_scores, labels.data());
            else searchHNSWBatch(h, n, x, k, hnswParams, out_scores, labels.data());
        } else if (h->scansCompactRows()) {
            for (size_t q = 0; q < n; q++)
                searchFlatCompact(h, x + q * d, k, needsSelector ? &selector : nullptr, out_scores + q * k, labels.data() + q * k);
        } else if (plainFlatSimilarity) {
            // sgemv over the rows, the selector consulted only for heap candidates (see searchFlatWithBLAS).
            searchFlatWithBLAS(h, n, x, k, needsSelector ? &selector : nullptr, out_scores, labels.data());
        } else if (h->flat && n < 20) {
            for (size_t q = 0; q < n; q++) searchFlatScan(h, x + q * d, k, sel, out_scores + q * k, labels.data() + q * k);
        } else {
            SingleThreadScope single(n == 1);
            h->index->search(idx_t(n), x, idx_t(k), out_scores, labels.data(), searchParams);
        }
        for (size_t q = 0; q < n; q++) h->writeIds(k, labels.data() + q * k, out_ids + q * k, out_scores + q * k);
    });
}

int cfaiss_index_search_each(const cfaiss_index_t* h, size_t n, const float* queries, const size_t* ks,
                             const cfaiss_filter_t* filters, const cfaiss_search_params_t* params,
                             uint32_t* out_ids, float* out_scores, size_t row_stride) {
    // Anything but the int8 scan of a plain flat index, or a query it does not take: one search per query.
    auto searchOne = [&](size_t q) {
        const int rc = cfaiss_index_search(h, 1, queries + q * size_t(h->dimension), ks[q], filters ? filters + q : nullptr, params,
                                           out_ids + q * row_stride, out_scores + q * row_stride);
        if (rc != CFAISS_OK) throw ShimError{rc, lastError};
    };
    return guarded([&] {
        if (n == 0) return;
        if (!queries || !ks || !out_ids || !out_scores) fail(CFAISS_ERR_INVALID_ARGUMENT, "queries, ks or outputs are NULL");
        for (size_t q = 0; q < n; q++) {
            if (ks[q] == 0) fail(CFAISS_ERR_INVALID_ARGUMENT, "k must be positive");
            if (ks[q] > row_stride) fail(CFAISS_ERR_INVALID_ARGUMENT, "k is larger than the row stride");
        }
        h->checkDimensionCount(n);
        if (n > size_t(INT64_MAX) / row_stride) fail(CFAISS_ERR_INVALID_ARGUMENT, "n * row_stride overflows");
        if (!h->scansCompactRows() || h->liveCount == 0) {
            for (size_t q = 0; q < n; q++) searchOne(q);
            return;
        }
        const size_t d = size_t(h->dimension);
        thread_local std::vector<float> normalised;
        const float* x = h->prepared(n, queries, normalised);  // cosine rows are normalised; so are the queries
        // The queries the group scan takes: filter modes it knows, and no allow-list small enough to score directly.
        thread_local std::vector<size_t> grouped;
        thread_local std::vector<LiveRowSelector> selectors;
        grouped.clear();
        selectors.assign(n, LiveRowSelector{});
        for (size_t q = 0; q < n; q++) {
            const cfaiss_filter_t* filter = filters ? filters + q : nullptr;
            const int mode = filter ? filter->mode : CFAISS_FILTER_NONE;
            const bool plain = mode == CFAISS_FILTER_NONE || mode == CFAISS_FILTER_EXCLUDE ||
                               (mode == CFAISS_FILTER_ALLOW_ONLY && filter->sorted_ids && filter->count > kExactAllowListLimit);
            if (!plain || (mode != CFAISS_FILTER_NONE && filter->count > 0 && !filter->sorted_ids)) {
                searchOne(q);  // reports a bad filter as the single search does, or answers an allow-list directly
                continue;
            }
            selectors[q] = liveRowSelector(h, mode, filter);
            grouped.push_back(q);
        }
        thread_local std::vector<idx_t> labels;
        labels.resize(grouped.size() * row_stride);
        // Groups of eight queries (eight accumulators beside one block's row bytes fit the registers), the rest by 4, 2, 1.
        size_t first = 0;
        const CompactGroupRun run{h, x, ks, grouped.data(), selectors.data(), out_scores, labels.data(), row_stride};
        for (; first + 8 <= grouped.size(); first += 8) run.search<8>(first);
        if (first + 4 <= grouped.size()) { run.search<4>(first); first += 4; }
        if (first + 2 <= grouped.size()) { run.search<2>(first); first += 2; }
        if (first < grouped.size()) run.search<1>(first);
        for (size_t i = 0; i < grouped.size(); i++) {
            const size_t q = grouped[i];
            h->writeIds(ks[q], labels.data() + i * row_stride, out_ids + q * row_stride, out_scores + q * row_stride);
        }
    });
}

int cfaiss_index_reconstruct(const cfaiss_index_t* h, uint32_t id, float* out) {
    return guarded([&] {
        if (!out) fail(CFAISS_ERR_INVALID_ARGUMENT, "out is NULL");
        int64_t label = id == 0 ? -1 : h->labelOf(id);
        if (label < 0) fail(CFAISS_ERR_UNKNOWN_ID, "id " + std::to_string(id) + " is not in the index");
        h->index->reconstruct(idx_t(label), out);
    });
}

int cfaiss_index_set_default_params(cfaiss_index_t* h, const cfaiss_search_params_t* params) {
    return guarded([&] {
        if (!params) fail(CFAISS_ERR_INVALID_ARGUMENT, "params is NULL");
        if (params->ef_search > 0 && h->hnsw) h->hnsw->hnsw.efSearch = params->ef_search;
        if (params->nprobe > 0 && h->ivf) h->ivf->nprobe = size_t(params->nprobe);
    });
}

int cfaiss_index_get_default_params(const cfaiss_index_t* h, cfaiss_search_params_t* out) {
    return guarded([&] {
        if (!out) fail(CFAISS_ERR_INVALID_ARGUMENT, "out is NULL");
        out->ef_search = h->hnsw ? h->hnsw->hnsw.efSearch : 0;
        out->nprobe = h->ivf ? int(h->ivf->nprobe) : 0;
    });
}

int cfaiss_index_compact(cfaiss_index_t* h) {
    return guarded([&] {
        if (h->deadRowsInFaiss == 0) return;
        const bool exactRows = h->flat != nullptr && (h->core == h->index.get());
        if (!exactRows)
            fail(CFAISS_ERR_UNSUPPORTED, "index '" + h->factory +
                 "' cannot be compacted in place (its rows do not reconstruct exactly); rebuild it from the source vectors");
        const size_t d = size_t(h->dimension);
        std::vector<uint32_t> ids;
        std::vector<float> rows;
        ids.reserve(size_t(h->liveCount));
        rows.reserve(size_t(h->liveCount) * d);
        const float* stored = h->flat->get_xb();
        for (size_t label = 0; label < h->labelToId.size(); label++) {
            if (h->labelToId[label] == 0) continue;
            ids.push_back(h->labelToId[label]);
            rows.insert(rows.end(), stored + label * d, stored + (label + 1) * d);
        }
        auto fresh = std::make_unique<cfaiss_index>();
        fresh->factory = h->factory;
        fresh->metric = h->metric;
        fresh->dimension = h->dimension;
        fresh->attach(faiss::index_factory(h->dimension, h->factory.c_str(), faissMetric(h->metric)));
        if (fresh->hnsw && h->hnsw) fresh->hnsw->hnsw.efSearch = h->hnsw->hnsw.efSearch;
        // Rows are already normalised for cosine; add them as inner-product rows (renormalising is harmless).
        if (!ids.empty()) addRows(fresh.get(), ids.size(), rows.data());
        fresh->labelToId = ids;
        fresh->idToLabel.assign(h->idToLabel.size(), -1);
        for (size_t label = 0; label < ids.size(); label++) fresh->idToLabel[ids[label]] = int64_t(label);
        fresh->liveCount = int64_t(ids.size());
        fresh->trainingLog = h->trainingLog;
        fresh->syncCompactRows();
        std::swap(*h, *fresh);
    });
}

int cfaiss_index_serialize(const cfaiss_index_t* h, uint8_t** out_data, size_t* out_size) {
    return guarded([&] {
        if (!out_data || !out_size) fail(CFAISS_ERR_INVALID_ARGUMENT, "outputs are NULL");
        *out_data = nullptr;
        *out_size = 0;
        faiss::VectorIOWriter writer;
        faiss::write_index(h->index.get(), &writer);
        const uint32_t factoryLength = uint32_t(h->factory.size());
        const uint64_t labelCount = h->labelToId.size();
        const uint64_t faissLength = writer.data.size();
        const size_t total = sizeof kMagic + 4 + 4 + 4 + 4 + factoryLength + 8 + labelCount * 4 + 8 + faissLength;
        uint8_t* buffer = static_cast<uint8_t*>(std::malloc(total));
        if (!buffer) throw std::bad_alloc();
        uint8_t* p = buffer;
        auto put = [&](const void* src, size_t bytes) {
            if (bytes) std::memcpy(p, src, bytes);
            p += bytes;
        };
        const int32_t metric = h->metric, dimension = h->dimension;
        put(kMagic, sizeof kMagic);
        put(&kFormatVersion, 4);
        put(&metric, 4);
        put(&dimension, 4);
        put(&factoryLength, 4);
        put(h->factory.data(), factoryLength);
        put(&labelCount, 8);
        put(h->labelToId.data(), labelCount * 4);
        put(&faissLength, 8);
        put(writer.data.data(), faissLength);
        *out_data = buffer;
        *out_size = total;
    });
}

int cfaiss_index_deserialize(const uint8_t* data, size_t size, cfaiss_index_t** out) {
    return guarded([&] {
        if (!out) fail(CFAISS_ERR_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        if (!data && size) fail(CFAISS_ERR_INVALID_ARGUMENT, "data is NULL");
        size_t position = 0;
        auto take = [&](void* dst, size_t bytes, const char* what) {
            if (size - position < bytes) fail(CFAISS_ERR_CORRUPT, std::string("serialized index is truncated (") + what + ")");
            if (bytes) std::memcpy(dst, data + position, bytes);
            position += bytes;
        };
        char magic[8];
        take(magic, 8, "header");
        if (std::memcmp(magic, kMagic, 8) != 0) fail(CFAISS_ERR_CORRUPT, "not a serialized RecDB vector index (bad magic)");
        uint32_t version = 0, factoryLength = 0;
        int32_t metric = 0, dimension = 0;
        take(&version, 4, "header");
        if (version != kFormatVersion) fail(CFAISS_ERR_CORRUPT, "unsupported serialized index format version " + std::to_string(version));
        take(&metric, 4, "header");
        take(&dimension, 4, "header");
        if (metric < CFAISS_METRIC_INNER_PRODUCT || metric > CFAISS_METRIC_COSINE || dimension <= 0)
            fail(CFAISS_ERR_CORRUPT, "serialized index header has an invalid metric or dimension");
        take(&factoryLength, 4, "header");
        if (factoryLength > size - position) fail(CFAISS_ERR_CORRUPT, "serialized index is truncated (factory string)");
        std::string factory(reinterpret_cast<const char*>(data + position), factoryLength);
        position += factoryLength;
        uint64_t labelCount = 0;
        take(&labelCount, 8, "label map");
        if (labelCount > (size - position) / 4) fail(CFAISS_ERR_CORRUPT, "serialized index is truncated (label map)");
        std::vector<uint32_t> labelToId(labelCount);
        take(labelToId.data(), labelCount * 4, "label map");
        uint64_t faissLength = 0;
        take(&faissLength, 8, "faiss length");
        if (faissLength != size - position) fail(CFAISS_ERR_CORRUPT, "serialized index has a wrong Faiss payload length");

        auto handle = std::make_unique<cfaiss_index>();
        handle->factory = factory;
        handle->metric = metric;
        handle->dimension = dimension;
        MemoryReader reader(data + position, size_t(faissLength));
        faiss::Index* loaded = nullptr;
        try {
            loaded = faiss::read_index(&reader);
        } catch (const faiss::FaissException& e) {
            fail(CFAISS_ERR_CORRUPT, std::string("Faiss could not read the serialized index: ") + e.what());
        } catch (const std::bad_alloc&) {
            // Garbage sizes in a damaged payload surface as huge allocations.
            fail(CFAISS_ERR_CORRUPT, "Faiss could not read the serialized index: a size field is implausible (allocation failed)");
        } catch (const std::exception& e) {
            fail(CFAISS_ERR_CORRUPT, std::string("Faiss could not read the serialized index: ") + e.what());
        }
        handle->attach(loaded);
        if (handle->index->d != dimension || handle->index->metric_type != faissMetric(metric))
            fail(CFAISS_ERR_CORRUPT, "serialized index header does not match its Faiss payload");

        uint32_t maxId = 0;
        int64_t live = 0;
        for (uint32_t id : labelToId) {
            maxId = std::max(maxId, id);
            if (id) live++;
        }
        try {
            handle->idToLabel.assign(size_t(maxId) + 1, -1);
        } catch (const std::bad_alloc&) {
            fail(CFAISS_ERR_CORRUPT, "serialized label map names an implausible id " + std::to_string(maxId));
        }
        for (size_t label = 0; label < labelToId.size(); label++) {
            uint32_t id = labelToId[label];
            if (!id) continue;
            if (handle->idToLabel[id] >= 0) fail(CFAISS_ERR_CORRUPT, "serialized label map names id " + std::to_string(id) + " twice");
            handle->idToLabel[id] = int64_t(label);
        }
        handle->liveCount = live;
        if (handle->deletesPhysically) {
            if (handle->index->ntotal != live) fail(CFAISS_ERR_CORRUPT, "serialized label map does not match the Faiss row count");
        } else {
            if (uint64_t(handle->index->ntotal) != labelCount)
                fail(CFAISS_ERR_CORRUPT, "serialized label map does not match the Faiss row count");
            handle->deadRowsInFaiss = int64_t(labelCount) - live;
        }
        handle->labelToId = std::move(labelToId);
        handle->syncCompactRows();
        *out = handle.release();
    });
}

void cfaiss_free(void* pointer) { std::free(pointer); }

void cfaiss_set_quantized_scan(int enabled) { quantizedScanEnabled.store(enabled != 0, std::memory_order_relaxed); }

void cfaiss_set_hnsw_mips_reduction(int mode) {
    if (mode < CFAISS_MIPS_REDUCTION_NEVER || mode > CFAISS_MIPS_REDUCTION_AUTOMATIC) mode = CFAISS_MIPS_REDUCTION_AUTOMATIC;
    mipsReductionMode.store(mode, std::memory_order_relaxed);
}

int cfaiss_index_links_through_mips_reduction(const cfaiss_index_t* h) { return h && h->mipsDecision == 1 ? 1 : 0; }

void cfaiss_set_thread_count(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
}

}  // extern "C"
