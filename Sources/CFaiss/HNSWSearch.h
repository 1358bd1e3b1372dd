// HNSWSearch.h — single-query search over a Faiss HNSW graph, honouring a per-call efSearch.
//
// Why not faiss::HNSW::search: in Faiss 1.7.3 it sizes the candidate queue with the *member* hnsw.efSearch and
// reads SearchParametersHNSW::efSearch only for a secondary stopping rule, so a per-call efSearch has (almost)
// no effect (fixed in later Faiss releases). Changing the member per call would race with concurrent searches.
// The search loop itself (faiss::search_from_candidates) is internal to libfaiss 1.7.3, so this file restates
// Faiss 1.7.3's algorithm (greedy descent through the upper levels, then a bounded best-first search on level 0,
// with the same stopping rule and IDSelector handling) against the public HNSW graph arrays.
//
// Private to CFaiss (also included by the IndexBench C++ peer).
#ifndef CFAISS_HNSW_SEARCH_H
#define CFAISS_HNSW_SEARCH_H

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>

#include <algorithm>

namespace cfaiss {

using idx_t = faiss::Index::idx_t;
using storage_idx_t = faiss::HNSW::storage_idx_t;

/// Greedy walk on one upper level towards the query (Faiss 1.7.3 greedy_update_nearest).
template <class Distance>
inline void greedyUpdateNearest(const faiss::HNSW& hnsw, Distance& distance, int level,
                                storage_idx_t& nearest, float& nearestDistance) {
    for (;;) {
        storage_idx_t previous = nearest;
        size_t begin, end;
        hnsw.neighbor_range(nearest, level, &begin, &end);
        for (size_t i = begin; i < end; i++) {
            storage_idx_t v = hnsw.neighbors[i];
            if (v < 0) break;
            float d = distance(v);
            if (d < nearestDistance) {
                nearest = v;
                nearestDistance = d;
            }
        }
        if (nearest == previous) return;
    }
}

inline void offerResult(int k, int& found, float* D, idx_t* I, float d, idx_t v) {
    if (found < k) faiss::maxheap_push(++found, D, I, d, v);
    else if (d < D[0]) faiss::maxheap_replace_top(found, D, I, d, v);
}

/// k nearest (smallest distance) rows passing `selector` (may be NULL). D/I get k entries, best first; unfilled
/// slots have label -1. `candidates` is caller-owned scratch (resized as needed), `visited` must cover ntotal.
/// `Distance` is a faiss::DistanceComputer; a concrete final type (FlatRowsDistance) lets the compiler inline
/// the per-neighbour distance call instead of dispatching virtually.
template <class Distance>
inline void searchHNSWGraph(const faiss::HNSW& hnsw, Distance& distance, int k, int efSearch,
                            bool checkRelativeDistance, const faiss::IDSelector* selector, float* D, idx_t* I,
                            faiss::VisitedTable& visited, faiss::HNSW::MinimaxHeap*& candidates) {
    faiss::maxheap_heapify(size_t(k), D, I);
    if (hnsw.entry_point < 0) return;
    storage_idx_t nearest = hnsw.entry_point;
    float nearestDistance = distance(nearest);
    for (int level = hnsw.max_level; level >= 1; level--) greedyUpdateNearest(hnsw, distance, level, nearest, nearestDistance);

    const int ef = std::max(efSearch, k);
    if (!candidates || candidates->n != ef) {
        delete candidates;
        candidates = new faiss::HNSW::MinimaxHeap(ef);
    }
    faiss::HNSW::MinimaxHeap& queue = *candidates;
    queue.clear();
    queue.push(nearest, nearestDistance);

    int found = 0;
    if (!selector || selector->is_member(nearest)) offerResult(k, found, D, I, nearestDistance, nearest);
    visited.set(nearest);
    int steps = 0;
    while (queue.size() > 0) {
        float d0 = 0;
        int v0 = queue.pop_min(&d0);
        // Faiss's stopping rule: stop once ef processed candidates are closer than the one just popped.
        if (checkRelativeDistance && queue.count_below(d0) >= efSearch) break;
        size_t begin, end;
        hnsw.neighbor_range(v0, 0, &begin, &end);
        for (size_t j = begin; j < end; j++) {
            storage_idx_t v1 = hnsw.neighbors[j];
            if (v1 < 0) break;
            if (visited.get(v1)) continue;
            visited.set(v1);
            float d = distance(v1);
            if (!selector || selector->is_member(v1)) offerResult(k, found, D, I, d, v1);
            queue.push(v1, d);
        }
        steps++;
        if (!checkRelativeDistance && steps > efSearch) break;
    }
    faiss::maxheap_reorder(size_t(k), D, I);
    visited.advance();
}

}  // namespace cfaiss

#endif
