/// The named LMDB sub-databases of a RecDB environment. `schemas/tables.json` describes the key and
/// value encoding of each one; a test checks that the two stay in step.
enum Table: String, CaseIterable {
    /// item id (u32 BE) → item record
    case items
    /// external item id (UTF-8) → item id (u32 BE)
    case itemIDs = "item_ids"
    /// user id (u32 BE) → user record
    case users
    /// external user id (UTF-8) → user id (u32 BE)
    case userIDs = "user_ids"
    /// (user u32 BE, first timestamp i64 biased BE, first sequence u64 BE) → a block of the user's
    /// events (see `EventBlock`); one key range per user, in time order
    case userEvents = "user_events"
    /// The same keys and blocks as `user_events`, for users that had events when a bulk import added
    /// more: read together with `user_events` as one table (`EventsCursor`), so an import appends
    /// instead of rewriting those users' pages. Since format 4.
    case userEventsDelta = "user_events_delta"
    /// space name (UTF-8) → space catalog record (JSON)
    case spaces
    /// (space id u32 BE, entity id u32 BE) → raw little-endian f32 or f16 components
    case vectors
    /// (space id u32 BE, space version u64 BE) → entity id (u32 LE): which vectors changed when,
    /// so an index built at version V can catch up without a full rebuild
    case vectorLog = "vector_log"
    /// user id (u32 BE) → profile record (timestamp, text)
    case profiles
    /// model records, versions and weights (see schemas/tables.json)
    case models
    /// serialized vector indexes and their metadata
    case indexes
    /// format version, counters, import ledger, event-type names
    case meta

    /// The table's place in `allCases` (0 ..< allCases.count).
    var ordinal: Int {
        switch self {
        case .items: 0
        case .itemIDs: 1
        case .users: 2
        case .userIDs: 3
        case .userEvents: 4
        case .userEventsDelta: 5
        case .spaces: 6
        case .vectors: 7
        case .vectorLog: 8
        case .profiles: 9
        case .models: 10
        case .indexes: 11
        case .meta: 12
        }
    }

    /// Tables a format-3 database does not have (it is still read; opened for writing, it is upgraded).
    var isAbsentBeforeFormat4: Bool { self == .userEventsDelta }
}
