import CFaiss

/// A set of ids that a search must exclude, or that it is restricted to.
///
/// The filter is applied *inside* the Faiss search (an `IDSelector`), so "exclude already-seen items" and
/// "only available items" cost no over-fetching: the k results are the k best among the permitted ids.
/// An allow-list of at most 2,048 ids is answered by scoring exactly those vectors (directly from the rows of
/// `Flat`/`HNSW<M>`, decoded for PQ kinds), because a graph walk or an IVF probe restricted to a few ids may find
/// fewer than k; `efSearch`/`nprobe` do not apply then.
///
/// Build a filter once and reuse it: construction sorts the ids (or builds a bitmap over the id space when
/// that is smaller), and a search then passes that memory to Faiss without copying.
public struct IDFilter: Sendable, Hashable {
    public enum Mode: Sendable, Hashable {
        /// Results never contain these ids.
        case exclude
        /// Results contain only these ids.
        case allowOnly
    }

    /// The ids, ascending, no duplicates.
    let sortedIDs: [UInt32]
    /// The same set as bits (bit `id % 64` of word `id / 64`) when that is compact enough, for O(1)
    /// membership tests inside the search; `nil` for sparse sets (binary search on `sortedIDs`).
    let bitmap: [UInt64]?

    public let mode: Mode
    /// Number of distinct ids in the set.
    public let count: Int

    /// A filter that removes `ids` from the results.
    public static func excluding<S: Sequence>(_ ids: S) -> IDFilter where S.Element == UInt32 {
        IDFilter(mode: .exclude, ids: ids)
    }

    /// A filter that restricts results to `ids`.
    public static func allowing<S: Sequence>(_ ids: S) -> IDFilter where S.Element == UInt32 {
        IDFilter(mode: .allowOnly, ids: ids)
    }

    public init<S: Sequence>(mode: Mode, ids: S) where S.Element == UInt32 {
        self.mode = mode
        var sorted = Array(ids)
        sorted.sort()
        var unique: [UInt32] = []
        unique.reserveCapacity(sorted.count)
        for id in sorted where unique.last != id { unique.append(id) }
        count = unique.count
        sortedIDs = unique
        // A bitmap answers membership in O(1); add one when it is not much larger than the sorted list.
        let words = Int((unique.last ?? 0) / 64) + 1
        if unique.count > 64, words <= 2 * unique.count {
            var bits = [UInt64](repeating: 0, count: words)
            for id in unique { bits[Int(id / 64)] |= 1 << UInt64(id % 64) }
            bitmap = bits
        } else {
            bitmap = nil
        }
    }

    /// Whether the filter lets `id` through.
    public func permits(_ id: UInt32) -> Bool {
        let inSet: Bool
        if let bitmap {
            let word = Int(id / 64)
            inSet = word < bitmap.count && (bitmap[word] >> UInt64(id % 64)) & 1 == 1
        } else {
            var low = 0, high = sortedIDs.count
            while low < high {
                let mid = (low + high) / 2
                if sortedIDs[mid] < id { low = mid + 1 } else { high = mid }
            }
            inSet = low < sortedIDs.count && sortedIDs[low] == id
        }
        return mode == .exclude ? !inSet : inSet
    }

    /// Calls `body` with a C description of the filter whose memory is valid during the call.
    func withCFilter<R>(_ body: (UnsafePointer<cfaiss_filter_t>) throws -> R) rethrows -> R {
        let cMode = Int32(mode == .exclude ? CFAISS_FILTER_EXCLUDE : CFAISS_FILTER_ALLOW_ONLY)
        return try sortedIDs.withUnsafeBufferPointer { ids in
            if let bitmap {
                return try bitmap.withUnsafeBufferPointer { bits in
                    var filter = cfaiss_filter_t(mode: cMode, sorted_ids: ids.baseAddress, count: ids.count,
                                                 bitmap: bits.baseAddress, bitmap_words: bits.count)
                    return try body(&filter)
                }
            }
            var filter = cfaiss_filter_t(mode: cMode, sorted_ids: ids.baseAddress, count: ids.count,
                                         bitmap: nil, bitmap_words: 0)
            return try body(&filter)
        }
    }
}
