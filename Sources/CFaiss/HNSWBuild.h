// HNSWBuild.h — parallel construction of a Faiss HNSW graph over flat float rows.
//
// Why: Faiss 1.7.3's IndexHNSW::add is already OpenMP-parallel, but Debian's libfaiss computes every distance with
// its scalar baseline-x86-64 loop, through a virtual DistanceComputer, and each insertion's graph walk waits on
// the memory of one neighbour row at a time. Building HNSW32 over 1M × 64 rows that way takes minutes. This file
// restates Faiss 1.7.3's construction (hnsw_add_vertices + HNSW::add_with_locks) with:
//   * the AVX2/FMA kernels of FlatDistance.h, called directly;
//   * batched prefetch: the unvisited neighbours of a node are gathered first and their rows prefetched, so the
//     memory latencies overlap instead of following one another;
//   * striped mutexes (at most 65,536) instead of one omp_lock_t per row, and a generation-counted visited table
//     per thread;
//   * one allocation of the neighbour arrays (levels drawn up front with Faiss's own generator).
// It writes Faiss's own structures (hnsw.levels, offsets, neighbors, entry_point, max_level), so the serialized
// format and the search (HNSWSearch.h, or Faiss's) are unchanged.
//
// The same algorithm as Faiss, with the same parameters (M, efConstruction, the level distribution and its
// generator, level buckets inserted top-down in the same shuffled order, the same neighbour-selection heuristic
// without keeping pruned connections, a bucket of at most 100 nodes inserted serially). Stated differences:
//   * each lower level's search starts from the closest node found on the level above (as hnswlib does); Faiss
//     1.7.3 restarts every level from the node the greedy descent reached above the new node's top level;
//   * a link already present is not added twice (Faiss may duplicate one when two insertions meet);
//   * under inner product, where a model's few longest item vectors would become hubs (issue #14), the rows are
//     linked through the MIPS→L2 reduction (MipsAugmentation below) instead of under inner product itself; the
//     shim decides per index (longRowShareOfNearestCandidates below).
// With one thread the graph is a deterministic function of the rows and the index's prior state. With several
// threads, as with Faiss, it depends on the interleaving (neighbour lists are read while other threads extend them).
// Distances differ from Faiss's in the last float bits (summation order), so even a one-thread graph is not
// Faiss's graph bit for bit.
//
// Private to CFaiss.
#ifndef CFAISS_HNSW_BUILD_H
#define CFAISS_HNSW_BUILD_H

#include "FlatDistance.h"

#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/HNSW.h>
#include <faiss/utils/random.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace cfaiss {

/// The extra coordinate per stored row of the MIPS→L2 reduction (Bachrach et al., 2014): row x becomes
/// (x, sqrt(M² − ‖x‖²)) with M the largest norm, so every augmented row has norm M, and a query q becomes (q, 0), so
/// ‖(q, 0) − (x, e)‖² = ‖q‖² + M² − 2 q·x ranks rows exactly as the inner product does.
///
/// Why: built under inner product itself, an HNSW graph is dominated by the few rows of largest norm (a trained
/// model's popular items): they score highest against nearly every row, so the selection heuristic keeps them and
/// prunes almost everything else; every insertion then links to the same few "hub" rows, whose full lists are
/// re-pruned under their locks on every insertion (the insertions serialise there), while the other rows keep
/// one or two links. The augmented rows lie on a sphere, where the heuristic behaves as on any L2 data.
///
/// Only the construction uses the augmentation. Searches keep scoring q·x on the stored rows: for one query that
/// orders every candidate as the augmented L2 distance does (a constant minus twice q·x), so the graph walk is the
/// same as the one in the augmented space, and the stored index stays a plain inner-product IndexHNSWFlat.
/// Rows are append-only between compactions, so the coordinates are kept across adds and only a longer new row
/// (a larger M) recomputes them all; rows linked earlier keep the links found under the smaller M.
struct MipsAugmentation {
    std::vector<float> extra;   // sqrt(M² − ‖x_i‖²) for rows [0, extra.size())
    double maxNormSquared = 0;  // M²

    /// Brings `extra` up to the first `ntotal` rows. False (and `extra` emptied) when a squared norm is not finite:
    /// those rows are then linked under plain inner product.
    bool update(const float* rows, size_t dimension, size_t ntotal) {
        if (extra.size() > ntotal) extra.clear();
        auto normSquared = [&](size_t i) {
            const float* x = rows + i * dimension;
            double sum = 0;
            for (size_t j = 0; j < dimension; j++) sum += double(x[j]) * double(x[j]);
            return sum;
        };
        double maximum = extra.empty() ? 0 : maxNormSquared;
        for (size_t i = extra.size(); i < ntotal; i++) {
            const double n = normSquared(i);
            if (!std::isfinite(n)) {
                extra.clear();
                maxNormSquared = 0;
                return false;
            }
            maximum = std::max(maximum, n);
        }
        const size_t from = maximum > maxNormSquared || extra.empty() ? 0 : extra.size();
        maxNormSquared = maximum;
        extra.resize(ntotal);
        for (size_t i = from; i < ntotal; i++) extra[i] = float(std::sqrt(std::max(0.0, maximum - normSquared(i))));
        return true;
    }
};

/// Whether an inner-product build needs the reduction: the share of rows' 40 nearest candidates (by inner product)
/// that are among the longest 1 % of rows. Where the lengths decide the inner products (a trained model's item
/// vectors, whose popular items are long), over half of every row's candidates are among the longest 1 %, plain
/// inner-product linking makes them hubs (every insertion links to them and re-prunes their lists under their
/// locks; the rest keep one or two links) and the reduction is needed. Where the directions still decide, the
/// share stays well below, the plain graph has no hubs, and the reduction only costs recall at equal efSearch (its
/// extra coordinate compresses the short rows' angles).
/// Deterministic: a strided pool of at most 4,096 rows and a strided sample of 256 of them, each ranked against the
/// pool (about 67 M multiply-adds at dimension 64).
inline double longRowShareOfNearestCandidates(const float* rows, size_t dimension, size_t ntotal) {
    constexpr size_t poolLimit = 4096, sampleLimit = 256, candidates = 40;
    const size_t pool = std::min(ntotal, poolLimit);
    if (pool <= 2 * candidates) return 0;
    std::vector<const float*> members(pool);
    for (size_t i = 0; i < pool; i++) members[i] = rows + (i * ntotal / pool) * dimension;
    auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::vector<std::pair<double, size_t>> norms(pool);
    for (size_t i = 0; i < pool; i++) {
        double sum = 0;
        for (size_t j = 0; j < dimension; j++) sum += double(members[i][j]) * double(members[i][j]);
        norms[i] = {std::isfinite(sum) ? sum : 0.0, i};
    }
    const size_t longCount = std::max<size_t>(1, pool / 100);
    std::nth_element(norms.begin(), norms.begin() + ptrdiff_t(longCount - 1), norms.end(), better);
    std::vector<char> isLong(pool, 0);
    for (size_t i = 0; i < longCount; i++) isLong[norms[i].second] = 1;
    const size_t samples = std::min(pool, sampleLimit);
    std::vector<std::pair<float, size_t>> scored(pool - 1);
    size_t longHits = 0;
    for (size_t s = 0; s < samples; s++) {
        const size_t q = s * pool / samples;
        size_t k = 0;
        for (size_t i = 0; i < pool; i++) {
            if (i == q) continue;
            float dot = 0;
            for (size_t j = 0; j < dimension; j++) dot += members[q][j] * members[i][j];
            scored[k++] = {std::isfinite(dot) ? dot : -INFINITY, i};
        }
        std::nth_element(scored.begin(), scored.begin() + ptrdiff_t(candidates - 1), scored.end(), better);
        for (size_t c = 0; c < candidates; c++) longHits += size_t(isLong[scored[c].second]);
    }
    return double(longHits) / double(samples * candidates);
}

/// Above this share an inner-product build links through the reduction. Measured with the same statistic (numpy)
/// and both builds (IndexBench --build-compare): 1-epoch SASRec item vectors of issue #14's scaling table, 1M items
/// after 20M / 5M / 1M events: 0.53 / 0.61 / 0.57, where the reduction builds faster and finds more (20M: 131 s and
/// recall@10 0.95 at efSearch 64 for 988,550 rows, plain 10× slower and 0.82; 1M events, mostly untrained items,
/// 200k rows: 115 s and 0.73, plain 200 s and 0.69); HNSWBuildTests' rows around a shared direction 0.82 (reduction
/// better); its long-tailed clusters 0.15 and log-normal Gaussians (σ = 1.5) 0.34, where the plain graph is better
/// (recall 0.99–1.0 against 0.87–0.97).
constexpr double kHubShareForMipsReduction = 0.45;

class HNSWBuilder {
public:
    using storage_idx_t = faiss::HNSW::storage_idx_t;

    /// `rows`: all ntotal rows of the storage (the new ones included), `dimension` floats each.
    /// `mipsExtra` (inner product only, may be NULL): one extra coordinate per stored row, sqrt(M² − ‖x‖²) with
    /// M ≥ every row's norm (see mipsExtraCoordinates). With it the graph is built over the augmented rows under
    /// L2 — the MIPS→L2 reduction of Bachrach et al. (2014) — instead of over the raw rows under inner product.
    HNSWBuilder(faiss::HNSW& hnsw, const float* rows, size_t dimension, bool innerProduct, const float* mipsExtra = nullptr)
            : hnsw(hnsw), rows(rows), dimension(dimension), innerProduct(innerProduct && !mipsExtra), extra(mipsExtra),
              kernel(innerProduct && !mipsExtra ? innerProductKernel() : squaredL2Kernel()) {}

    /// Links rows n0 ..< n0 + n into the graph (rows before n0 are already linked). With `presetLevels`,
    /// hnsw.levels already holds their levels (as IndexHNSW::add allows); otherwise they are drawn here.
    void add(size_t n0, size_t n, int threads, bool presetLevels) {
        if (n == 0) return;
        const size_t ntotal = n0 + n;
        FAISS_THROW_IF_NOT_MSG(hnsw.offsets.size() == n0 + 1, "HNSW graph does not match the stored rows");
        FAISS_THROW_IF_NOT_MSG(ntotal <= size_t(INT32_MAX), "too many rows for an HNSW graph");
        prepareLevels(n0, n, presetLevels);
        cum = hnsw.cum_nneighbor_per_level;
        size_t stripeCount = 1;
        while (stripeCount < ntotal && stripeCount < (size_t(1) << 16)) stripeCount <<= 1;
        stripes.reset(new std::mutex[stripeCount]);
        stripeMask = stripeCount - 1;

        // Bucket the new rows by level (Faiss's order), then insert buckets from the top level down.
        std::vector<int> histogram;
        for (size_t i = n0; i < ntotal; i++) {
            const size_t level = size_t(hnsw.levels[i] - 1);
            if (level >= histogram.size()) histogram.resize(level + 1, 0);
            histogram[level]++;
        }
        std::vector<size_t> offsetsByLevel(histogram.size() + 1, 0);
        for (size_t l = 0; l + 1 < offsetsByLevel.size(); l++) offsetsByLevel[l + 1] = offsetsByLevel[l] + size_t(histogram[l]);
        std::vector<storage_idx_t> order(n);
        for (size_t i = n0; i < ntotal; i++) order[offsetsByLevel[size_t(hnsw.levels[i] - 1)]++] = storage_idx_t(i);

        faiss::RandomGenerator shuffle(789);  // Faiss's seed: removes any bias of the input order
        size_t end = n;
        for (int level = int(histogram.size()) - 1; level >= 0; level--) {
            const size_t begin = end - size_t(histogram[size_t(level)]);
            for (size_t j = begin; j < end; j++) std::swap(order[j], order[j + size_t(shuffle.rand_int(int(end - j)))]);
            const int workers = end - begin > 100 ? std::max(1, threads) : 1;
            insertRange(order.data() + begin, end - begin, level, workers, ntotal);
            end = begin;
        }
    }

private:
    faiss::HNSW& hnsw;
    const float* rows;
    size_t dimension;
    bool innerProduct;        // distances are negated inner products (inner product without mipsExtra, cosine)
    const float* extra;       // MIPS→L2 extra coordinates, or NULL
    DistanceKernel kernel;
    std::vector<int> cum;
    std::unique_ptr<std::mutex[]> stripes;
    size_t stripeMask = 0;
    std::mutex entryMutex;  // guards hnsw.entry_point and hnsw.max_level

    struct Scratch {
        std::vector<uint8_t> visited;
        uint8_t generation = 1;
        std::vector<std::pair<float, storage_idx_t>> candidates;  // min-heap on distance
        std::vector<std::pair<float, storage_idx_t>> results;     // max-heap on distance
        std::vector<std::pair<float, storage_idx_t>> selected;
        std::vector<std::pair<float, storage_idx_t>> pool;      // addLink's candidates
        std::vector<std::pair<float, storage_idx_t>> linkKept;  // addLink's selection (selected is in use then)
        std::vector<storage_idx_t> fresh;
        explicit Scratch(size_t ntotal) : visited(ntotal, 0) {}
        void advance() {
            if (++generation == 0) {
                std::fill(visited.begin(), visited.end(), 0);
                generation = 1;
            }
        }
    };

    /// Levels and neighbour slots of the new rows, allocated at once. Draws levels exactly as
    /// HNSW::prepare_level_tab does (same generator, same order), so the level distribution is Faiss's.
    void prepareLevels(size_t n0, size_t n, bool presetLevels) {
        if (presetLevels) {
            FAISS_THROW_IF_NOT_MSG(hnsw.levels.size() == n0 + n, "preset HNSW levels do not match the rows");
        } else {
            FAISS_THROW_IF_NOT_MSG(hnsw.levels.size() == n0, "HNSW levels do not match the stored rows");
            hnsw.levels.reserve(n0 + n);
            for (size_t i = 0; i < n; i++) hnsw.levels.push_back(hnsw.random_level() + 1);
        }
        hnsw.offsets.reserve(n0 + n + 1);
        for (size_t i = n0; i < n0 + n; i++) {
            const int levels = hnsw.levels[i];
            FAISS_THROW_IF_NOT_MSG(levels >= 1 && size_t(levels) < hnsw.cum_nneighbor_per_level.size(),
                                   "HNSW level out of range");
            hnsw.offsets.push_back(hnsw.offsets.back() + size_t(hnsw.cum_nb_neighbors(levels)));
        }
        hnsw.neighbors.resize(hnsw.offsets.back(), -1);
    }

    const float* row(storage_idx_t i) const { return rows + size_t(i) * dimension; }

    /// The construction distance between two stored rows (every query of a build is a stored row: the one being
    /// inserted). With mipsExtra: the squared L2 distance of the augmented rows, ‖a − b‖² + (e_a − e_b)². Written
    /// that way rather than as 2M² − 2(a·b + e_a·e_b): when one long row sets M, the e's of all other rows are
    /// close to M and the second form would cancel away the float bits that rank them.
    float distance(storage_idx_t a, storage_idx_t b) const {
        const float v = kernel(row(a), row(b), dimension);
        if (extra) {
            const float gap = extra[size_t(a)] - extra[size_t(b)];
            return v + gap * gap;
        }
        return innerProduct ? -v : v;
    }

    void prefetchRow(storage_idx_t i) const {
        const char* p = reinterpret_cast<const char*>(row(i));
        const size_t bytes = dimension * sizeof(float);
        for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
        if (extra) __builtin_prefetch(extra + size_t(i), 0, 3);
    }

    storage_idx_t* slots(storage_idx_t node, int level, size_t& count) {
        const size_t begin = hnsw.offsets[size_t(node)] + size_t(cum[size_t(level)]);
        count = size_t(cum[size_t(level) + 1] - cum[size_t(level)]);
        return hnsw.neighbors.data() + begin;
    }

    // Lists are written under their node's lock and read without it by concurrent walks: relaxed atomic
    // accesses (plain moves on x86) make those reads well-defined; a walk may see a list mid-update, which costs
    // at most a slightly different path (Faiss reads them the same way, non-atomically).
    static storage_idx_t load(const storage_idx_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static void store(storage_idx_t* p, storage_idx_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

    // Striped mutexes rather than spinlocks: on inner-product graphs a few large-norm rows are neighbours of
    // nearly every insertion, so their locks are contended while the holder re-prunes a full list (tens of µs);
    // a spinning waiter burned its time slice doing nothing (seen on the loaded 2-core machine). A thread never
    // holds two stripes, so sharing a stripe between nodes cannot deadlock.
    void lock(storage_idx_t node) { stripes[size_t(node) & stripeMask].lock(); }
    void unlock(storage_idx_t node) { stripes[size_t(node) & stripeMask].unlock(); }

    void insertRange(const storage_idx_t* nodes, size_t count, int level, int workers, size_t ntotal) {
        std::atomic<size_t> next{0};
        std::atomic<bool> failed{false};
        auto work = [&](Scratch& scratch) {
            const size_t chunk = 16;
            while (!failed.load(std::memory_order_relaxed)) {
                const size_t from = next.fetch_add(chunk, std::memory_order_relaxed);
                if (from >= count) break;
                const size_t to = std::min(count, from + chunk);
                for (size_t i = from; i < to; i++) insert(nodes[i], level, scratch);
            }
        };
        if (workers <= 1) {
            Scratch scratch(ntotal);
            work(scratch);
            return;
        }
        std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
        std::vector<std::thread> threads;
        threads.reserve(size_t(workers));
        for (int t = 0; t < workers; t++) {
            threads.emplace_back([&, t] {
                try {
                    Scratch scratch(ntotal);
                    work(scratch);
                } catch (...) {
                    errors[size_t(t)] = std::current_exception();
                    failed.store(true, std::memory_order_relaxed);
                }
            });
        }
        for (auto& thread : threads) thread.join();
        for (auto& error : errors)
            if (error) std::rethrow_exception(error);
    }

    /// Faiss's greedy_update_nearest: move to a closer neighbour on `level` until none is closer.
    void greedy(storage_idx_t query, int level, storage_idx_t& nearest, float& nearestDistance) {
        for (;;) {
            const storage_idx_t previous = nearest;
            size_t count;
            const storage_idx_t* list = slots(nearest, level, count);
            for (size_t i = 0; i < count; i++) {
                const storage_idx_t v = load(list + i);
                if (v < 0) break;
                const float d = distance(query, v);
                if (d < nearestDistance) {
                    nearest = v;
                    nearestDistance = d;
                }
            }
            if (nearest == previous) return;
        }
    }

    /// Faiss's search_neighbors_to_add: best-first search of `level` from `entry`, keeping the efConstruction
    /// closest in scratch.results (a max-heap).
    void searchLevel(storage_idx_t self, storage_idx_t entry, float entryDistance, int level, Scratch& s) {
        const size_t ef = size_t(std::max(1, hnsw.efConstruction));
        auto nearer = [](const std::pair<float, storage_idx_t>& a, const std::pair<float, storage_idx_t>& b) { return a.first > b.first; };
        auto farther = [](const std::pair<float, storage_idx_t>& a, const std::pair<float, storage_idx_t>& b) { return a.first < b.first; };
        s.candidates.clear();
        s.results.clear();
        s.candidates.emplace_back(entryDistance, entry);
        s.results.emplace_back(entryDistance, entry);
        s.visited[size_t(entry)] = s.generation;
        // Concurrent insertions may already have linked this node on this level; it is no neighbour of itself.
        s.visited[size_t(self)] = s.generation;
        while (!s.candidates.empty()) {
            const auto current = s.candidates.front();
            if (current.first > s.results.front().first) break;
            std::pop_heap(s.candidates.begin(), s.candidates.end(), nearer);
            s.candidates.pop_back();
            size_t count;
            const storage_idx_t* list = slots(current.second, level, count);
            s.fresh.clear();
            for (size_t i = 0; i < count; i++) {
                const storage_idx_t v = load(list + i);
                if (v < 0) break;
                if (s.visited[size_t(v)] == s.generation) continue;
                s.visited[size_t(v)] = s.generation;
                prefetchRow(v);
                s.fresh.push_back(v);
            }
            for (storage_idx_t v : s.fresh) {
                const float d = distance(self, v);
                if (s.results.size() < ef || d < s.results.front().first) {
                    s.results.emplace_back(d, v);
                    std::push_heap(s.results.begin(), s.results.end(), farther);
                    s.candidates.emplace_back(d, v);
                    std::push_heap(s.candidates.begin(), s.candidates.end(), nearer);
                    if (s.results.size() > ef) {
                        std::pop_heap(s.results.begin(), s.results.end(), farther);
                        s.results.pop_back();
                    }
                }
            }
        }
        s.advance();
    }

    /// Faiss's HNSW::shrink_neighbor_list heuristic on `pool` sorted ascending: keep a candidate unless a kept
    /// one is closer to it than the base node is; stop at maxSize. Pruned candidates are not added back.
    void selectHeuristic(std::vector<std::pair<float, storage_idx_t>>& pool, size_t maxSize,
                         std::vector<std::pair<float, storage_idx_t>>& out) {
        out.clear();
        for (const auto& candidate : pool) {
            bool keep = true;
            for (const auto& kept : out) {
                if (distance(candidate.second, kept.second) < candidate.first) {
                    keep = false;
                    break;
                }
            }
            if (keep) {
                out.push_back(candidate);
                if (out.size() >= maxSize) return;
            }
        }
    }

    /// Faiss's add_link: append `dest` to `src`'s list on `level`, or, when full, re-select the list among its
    /// members and `dest` with the heuristic. Caller holds src's lock.
    void addLink(storage_idx_t src, storage_idx_t dest, int level, Scratch& s) {
        if (src == dest) return;
        size_t count;
        storage_idx_t* list = slots(src, level, count);
        size_t used = 0;
        while (used < count && list[used] >= 0) {
            if (list[used] == dest) return;
            used++;
        }
        if (used < count) {
            store(list + used, dest);
            return;
        }
        for (size_t i = 0; i < count; i++) prefetchRow(list[i]);
        s.pool.clear();
        s.pool.emplace_back(distance(src, dest), dest);
        for (size_t i = 0; i < count; i++) s.pool.emplace_back(distance(src, list[i]), list[i]);
        std::sort(s.pool.begin(), s.pool.end());
        selectHeuristic(s.pool, count, s.linkKept);
        size_t i = 0;
        for (const auto& kept : s.linkKept) store(list + i++, kept.second);
        for (; i < count; i++) store(list + i, -1);
    }

    /// HNSW::add_with_locks for one row.
    void insert(storage_idx_t node, int nodeLevel, Scratch& s) {
        storage_idx_t nearest;
        int level;
        {
            std::lock_guard<std::mutex> guard(entryMutex);
            nearest = hnsw.entry_point;
            level = hnsw.max_level;
            if (nearest < 0) {
                hnsw.entry_point = node;
                hnsw.max_level = nodeLevel;
                return;
            }
        }
        float nearestDistance = distance(node, nearest);
        for (; level > nodeLevel; level--) greedy(node, level, nearest, nearestDistance);
        for (; level >= 0; level--) {
            searchLevel(node, nearest, nearestDistance, level, s);
            std::sort(s.results.begin(), s.results.end());
            // The next level down starts from the closest node found here.
            nearest = s.results.front().second;
            nearestDistance = s.results.front().first;
            const size_t maxLinks = size_t(cum[size_t(level) + 1] - cum[size_t(level)]);
            if (s.results.size() >= maxLinks) {
                selectHeuristic(s.results, maxLinks, s.selected);
            } else {
                s.selected = s.results;
            }
            lock(node);
            for (const auto& target : s.selected) addLink(node, target.second, level, s);
            unlock(node);
            for (const auto& target : s.selected) {
                lock(target.second);
                addLink(target.second, node, level, s);
                unlock(target.second);
            }
        }
        std::lock_guard<std::mutex> guard(entryMutex);
        if (nodeLevel > hnsw.max_level) {
            hnsw.max_level = nodeLevel;
            hnsw.entry_point = node;
        }
    }
};

}  // namespace cfaiss

#endif
