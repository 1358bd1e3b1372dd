import CFaiss

/// An error from a ``VectorIndex`` operation: what kind of failure it was, and a readable message.
///
/// When Faiss itself failed (`code == .faiss`), `message` is Faiss's own exception text, e.g.
/// `"Error in ... index_factory ...: could not parse index string Bogus"`. Codes are matchable in `catch`:
/// ```swift
/// do { _ = try VectorIndex(factory: "HNSW32", dimension: 384, metric: .cosine) }
/// catch let error as IndexError where error.code == .faiss { print(error.message) }
/// ```
public struct IndexError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// Faiss threw; `message` is its message.
        case faiss
        /// A bad argument: id 0, k < 1, a non-positive dimension, an unknown metric, an `IDMap` factory string, ...
        case invalidArgument
        /// A vector or a batch whose length does not match the index dimension.
        case dimensionMismatch
        /// `add`/`search` on an index kind that needs `train` first (IVF, PQ, OPQ, ...).
        case notTrained
        /// `reconstruct` of an id that is not in the index.
        case unknownID
        /// Bytes given to `VectorIndex(serialized:)` are not a valid serialized index.
        case corruptData
        case outOfMemory
        /// The operation is impossible for this index kind (e.g. `compact()` of a PQ index).
        case unsupported
        case unknown
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "IndexError.\(code.rawValue): \(message)" }
}

extension IndexError {
    /// Maps a shim return code and the thread's last-error message to a typed error.
    static func fromShim(_ status: Int32, context: String) -> IndexError {
        let detail = String(cString: cfaiss_last_error())
        let code: Code
        switch Int(status) {
        case Int(CFAISS_ERR_FAISS): code = .faiss
        case Int(CFAISS_ERR_INVALID_ARGUMENT): code = .invalidArgument
        case Int(CFAISS_ERR_NOT_TRAINED): code = .notTrained
        case Int(CFAISS_ERR_UNKNOWN_ID): code = .unknownID
        case Int(CFAISS_ERR_CORRUPT): code = .corruptData
        case Int(CFAISS_ERR_OUT_OF_MEMORY): code = .outOfMemory
        case Int(CFAISS_ERR_UNSUPPORTED): code = .unsupported
        default: code = .unknown
        }
        return IndexError(code, "\(context): \(detail)")
    }
}

/// Throws the typed error for a failed shim call. Inlined so the success path is one comparison.
@inline(__always)
func check(_ status: Int32, _ context: @autoclosure () -> String) throws {
    if status != 0 { throw IndexError.fromShim(status, context: context()) }
}
