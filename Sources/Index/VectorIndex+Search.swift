import CFaiss

// MARK: - Searching

extension VectorIndex {
    /// The `k` nearest live vectors to `query` (`dimension` floats), best first. Fewer than `k` when fewer
    /// vectors are live or permitted — and, for HNSW, possibly when a filter or tombstones exclude most of the
    /// rows near the query (the graph walk stops after `efSearch` steps; raise `efSearch`, or use an allow-list,
    /// which is scored exactly). Read operation (concurrent with other reads).
    ///
    /// HNSW kinds are searched by RecDB's restatement of Faiss 1.7.3's graph search (`HNSWSearch.h`: per-call
    /// `efSearch` honoured, AVX2 distances for flat storage); other kinds by Faiss itself.
    ///
    /// - Parameters:
    ///   - filter: ids to exclude, or the only ids allowed; applied inside Faiss (see ``IDFilter``).
    ///   - parameters: `efSearch` / `nprobe` for this call; `nil` fields use ``defaultSearchParameters``.
    /// - Throws: `.dimensionMismatch`, `.invalidArgument` (k < 1), `.notTrained`, `.faiss`.
    /// - Note: allocates only the returned array; ``search(queries:k:filter:parameters:ids:scores:)`` fills
    ///   caller-owned buffers and does not allocate at all in steady state.
    public func search(_ query: [Float], k: Int, filter: IDFilter? = nil,
                       parameters: SearchParameters = .default) throws -> [Neighbor] {
        guard query.count == dimension else {
            throw IndexError(.dimensionMismatch, "query has \(query.count) floats, index dimension is \(dimension)")
        }
        guard k > 0 else { throw IndexError(.invalidArgument, "k must be positive, got \(k)") }
        let k = clamped(k)
        return try query.withUnsafeBufferPointer { queryBuffer in
            try withUnsafeTemporaryAllocation(of: UInt32.self, capacity: k) { ids in
                try withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { scores in
                    try search(queries: queryBuffer, k: k, filter: filter, parameters: parameters, ids: ids, scores: scores)
                    var found = 0
                    while found < k && ids[found] != 0 { found += 1 }
                    return [Neighbor](unsafeUninitializedCapacity: found) { result, initialized in
                        for j in 0..<found { result[j] = Neighbor(id: ids[j], score: scores[j]) }
                        initialized = found
                    }
                }
            }
        }
    }

    /// Searches `n = queries.count / dimension` queries at once (row-major), all with the same filter.
    /// Runs on up to the OpenMP thread count (``VectorIndex/setThreadCount(_:)``). Returns one array per query,
    /// best first.
    public func search(batch queries: [Float], k: Int, filter: IDFilter? = nil,
                       parameters: SearchParameters = .default) throws -> [[Neighbor]] {
        let n = try rowCount(of: queries.count, what: "batch queries")
        guard k > 0 else { throw IndexError(.invalidArgument, "k must be positive, got \(k)") }
        let k = clamped(k)
        let slots = try resultSlots(n, k)
        var ids = [UInt32](repeating: 0, count: slots)
        var scores = [Float](repeating: 0, count: slots)
        try queries.withUnsafeBufferPointer { queryBuffer in
            try ids.withUnsafeMutableBufferPointer { idBuffer in
                try scores.withUnsafeMutableBufferPointer { scoreBuffer in
                    try search(queries: queryBuffer, k: k, filter: filter, parameters: parameters,
                               ids: idBuffer, scores: scoreBuffer)
                }
            }
        }
        return Self.neighbors(ids: ids, scores: scores, queries: n, k: k)
    }

    /// Searches several queries, each with its own filter (e.g. each user's already-seen items), under one
    /// read lock. `filters.count` must equal the number of queries. See `search(batch:ks:filters:parameters:)`.
    public func search(batch queries: [Float], k: Int, filters: [IDFilter?],
                       parameters: SearchParameters = .default) throws -> [[Neighbor]] {
        let n = try rowCount(of: queries.count, what: "batch queries")
        return try search(batch: queries, ks: [Int](repeating: k, count: n), filters: filters, parameters: parameters)
    }

    /// Searches several queries, each with its own number of results and filter, under one read lock; each
    /// query's results are those `search(_:k:filter:parameters:)` gives it alone. On a flat similarity index
    /// scanned through its int8 copy, the rows are scanned once for each group of up to eight queries (the
    /// catalogue streams through the cache once, not once a query); other kinds run the queries one by one.
    /// `ks.count` and `filters.count` must equal the number of queries.
    public func search(batch queries: [Float], ks: [Int], filters: [IDFilter?],
                       parameters: SearchParameters = .default) throws -> [[Neighbor]] {
        let n = try rowCount(of: queries.count, what: "batch queries")
        guard filters.count == n, ks.count == n else {
            throw IndexError(.invalidArgument, "\(n) queries but \(ks.count) values of k and \(filters.count) filters")
        }
        if let bad = ks.first(where: { $0 <= 0 }) { throw IndexError(.invalidArgument, "k must be positive, got \(bad)") }
        let ks = ks.map(clamped)
        let stride = ks.max() ?? 1
        let slots = try resultSlots(n, stride)
        var raw = try parameters.cValue()
        var ids = [UInt32](repeating: 0, count: slots)
        var scores = [Float](repeating: 0, count: slots)
        try queries.withUnsafeBufferPointer { queryBuffer in
            try ids.withUnsafeMutableBufferPointer { idBuffer in
                try scores.withUnsafeMutableBufferPointer { scoreBuffer in
                    try ks.withUnsafeBufferPointer { kBuffer in
                        try lock.read {
                            // Chunks bound the nesting of the filters' scoped C descriptions.
                            var start = 0
                            while start < n {
                                let end = min(n, start + Self.filterChunk)
                                try Self.withCFilters(filters[start..<end]) { cFilters in
                                    try check(cfaiss_index_search_each(handle, end - start, queryBuffer.baseAddress! + start * dimension,
                                                                       kBuffer.baseAddress! + start, cFilters, &raw,
                                                                       idBuffer.baseAddress! + start * stride,
                                                                       scoreBuffer.baseAddress! + start * stride, stride),
                                              "search in '\(factory)' failed")
                                }
                                start = end
                            }
                        }
                    }
                }
            }
        }
        return (0..<n).map { q in
            var row: [Neighbor] = []
            row.reserveCapacity(ks[q])
            for j in 0..<ks[q] {
                let id = ids[q * stride + j]
                if id == 0 { break }
                row.append(Neighbor(id: id, score: scores[q * stride + j]))
            }
            return row
        }
    }

    /// Queries per C call of `search(batch:ks:filters:)`.
    private static let filterChunk = 32

    /// Calls `body` with the C descriptions of `filters` (one per query; mode NONE for nil), valid during the call.
    private static func withCFilters<R>(_ filters: ArraySlice<IDFilter?>, _ body: (UnsafePointer<cfaiss_filter_t>) throws -> R) throws -> R {
        var described: [cfaiss_filter_t] = []
        described.reserveCapacity(filters.count)
        func describe(_ i: Int) throws -> R {
            if i == filters.endIndex { return try described.withUnsafeBufferPointer { try body($0.baseAddress!) } }
            guard let filter = filters[i] else {
                described.append(cfaiss_filter_t(mode: Int32(CFAISS_FILTER_NONE), sorted_ids: nil, count: 0, bitmap: nil, bitmap_words: 0))
                return try describe(i + 1)
            }
            return try filter.withCFilter { described.append($0.pointee); return try describe(i + 1) }
        }
        return try describe(filters.startIndex)
    }

    /// The allocation-free search: `queries` holds `n × dimension` floats; `ids` and `scores` receive `n × k`
    /// values, row q in `[q*k, (q+1)*k)`, best first, unused slots (fewer than k results) set to id 0.
    /// A single query takes a dedicated single-threaded path; several use Faiss's OpenMP threads.
    public func search(queries: UnsafeBufferPointer<Float>, k: Int, filter: IDFilter? = nil,
                       parameters: SearchParameters = .default,
                       ids: UnsafeMutableBufferPointer<UInt32>, scores: UnsafeMutableBufferPointer<Float>) throws {
        let n = try rowCount(of: queries.count, what: "queries")
        guard k > 0 else { throw IndexError(.invalidArgument, "k must be positive, got \(k)") }
        let slots = try resultSlots(n, k)
        // A programmer error: the public search wrappers size these buffers from the same n and k.
        precondition(ids.count >= slots && scores.count >= slots, "result buffers need n * k = \(slots) slots")
        guard n > 0 else { return }
        var raw = try parameters.cValue()
        try withOptionalCFilter(filter) { cFilter in
            try lock.read {
                try check(cfaiss_index_search(handle, n, queries.baseAddress, k, cFilter, &raw,
                                              ids.baseAddress, scores.baseAddress),
                          "search in '\(factory)' failed")
            }
        }
    }

    /// `k` capped at the number of stored vectors (at least 1): no search returns more, and an absurd
    /// `k` from a caller (`-k 1000000000000`) must not size the result buffers or Faiss's heaps.
    private func clamped(_ k: Int) -> Int { min(k, max(1, count)) }

    /// `n × k`, overflow-checked.
    private func resultSlots(_ n: Int, _ k: Int) throws -> Int {
        let (slots, overflow) = n.multipliedReportingOverflow(by: k)
        guard !overflow else { throw IndexError(.invalidArgument, "\(n) queries × k = \(k) results overflow") }
        return slots
    }

    private func withOptionalCFilter<R>(_ filter: IDFilter?,
                                        _ body: (UnsafePointer<cfaiss_filter_t>?) throws -> R) rethrows -> R {
        if let filter { return try filter.withCFilter { try body($0) } }
        return try body(nil)
    }

    private static func neighbors(ids: [UInt32], scores: [Float], queries n: Int, k: Int) -> [[Neighbor]] {
        (0..<n).map { q in
            var row: [Neighbor] = []
            row.reserveCapacity(k)
            for j in 0..<k {
                let id = ids[q * k + j]
                if id == 0 { break }
                row.append(Neighbor(id: id, score: scores[q * k + j]))
            }
            return row
        }
    }
}
