/// How vectors are compared.
///
/// The raw values are the spellings `rdbctl` accepts (`--metric ip|l2|cosine`) and the ones stored in
/// index metadata.
public enum Metric: String, Codable, Sendable, CaseIterable {
    /// Inner product; larger scores are more similar.
    case innerProduct = "ip"
    /// Squared Euclidean distance; smaller scores are more similar.
    case l2
    /// Cosine similarity: vectors and queries are L2-normalised, then compared by inner product.
    /// Larger is more similar; stored (and reconstructed) vectors are the normalised ones. A zero vector stays zero.
    case cosine

    /// Whether a larger score means "more similar" (true for inner product and cosine, false for L2).
    public var higherIsBetter: Bool { self != .l2 }
}

/// Search-time knobs. `nil` means the index's default (see ``VectorIndex/defaultSearchParameters``).
public struct SearchParameters: Codable, Sendable, Hashable {
    /// HNSW: size of the dynamic candidate list (Faiss's default is 16). Larger is slower and more exact.
    /// Ignored by non-HNSW kinds.
    public var efSearch: Int?
    /// IVF: number of inverted lists visited (Faiss's default is 1). Ignored by non-IVF kinds.
    public var nprobe: Int?

    public init(efSearch: Int? = nil, nprobe: Int? = nil) {
        self.efSearch = efSearch
        self.nprobe = nprobe
    }

    /// Use the index's defaults.
    public static let `default` = SearchParameters()
}

/// One search result.
public struct Neighbor: Sendable, Hashable {
    /// The vector's id (never 0).
    public var id: UInt32
    /// Inner product (``Metric/innerProduct``, ``Metric/cosine``; results descending) or squared L2
    /// distance (``Metric/l2``; results ascending).
    public var score: Float

    public init(id: UInt32, score: Float) {
        self.id = id
        self.score = score
    }
}
