import Foundation

/// Checks `data.mdb` before LMDB maps it.
///
/// LMDB 0.9 trusts its meta pages: it maps `(last_pg + 1) × page size` bytes and reads pages there
/// without looking at the file's length, so a truncated file (or one zeroed past some point, or not
/// an LMDB file at all) used to end in SIGBUS or a heap corruption instead of an error. This reads
/// the two meta pages with plain `pread`, checks what LMDB relies on, and refuses the file with an
/// error that names it.
///
/// Layout (LMDB 0.9.24, 64-bit): each meta page is a 16-byte page header (u64 pgno, u16 pad,
/// u16 flags — `P_META` = 0x08 —, u32 lower/upper) followed by `MDB_meta`: u32 magic 0xBEEFC0DE,
/// u32 version (1), u64 address, u64 mapsize, two 48-byte `MDB_db` records (free list, main;
/// each u32 pad — the page size, in the first —, u16 flags, u16 depth, u64 branch, leaf and
/// overflow page counts, u64 entries, u64 root), u64 last_pg, u64 txnid. LMDB serves the meta
/// with the higher txnid (the first one on a tie).
enum DataFileCheck {
    static let metaMagic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    static let pageHeaderSize = 16
    static let metaSize = 136
    static let pMeta: UInt16 = 0x08
    static let invalidPage = UInt64.max
    /// LMDB's cursor stack depth: a deeper tree is damage.
    static let maxDepth = 32

    struct Meta {
        var pageSize: Int
        var mapSize: UInt64
        var lastPage: UInt64
        var txnID: UInt64
        var roots: [(root: UInt64, depth: Int, pages: UInt64)]
    }

    /// The meta LMDB serves (after the same checks as `check`), for `PageCheck`.
    static func newestMeta(fd: Int32, directory: String) throws -> Meta {
        let file = directory + "/data.mdb"
        let first = try readMeta(fd: fd, offset: 0, file: file, directory: directory)
        guard first.pageSize >= 512, first.pageSize <= 65_536, first.pageSize & (first.pageSize - 1) == 0 else {
            throw damaged(file, "meta page 0 records page size \(first.pageSize)")
        }
        let second = try readMeta(fd: fd, offset: first.pageSize, file: file, directory: directory)
        return second.txnID > first.txnID ? second : first
    }

    /// Throws `.notADatabase` when `directory/data.mdb` is not an LMDB file, `.damaged` when it is
    /// one but cannot be read safely. A missing file (and, when `mayCreate`, an empty one) is left
    /// to LMDB, which creates it.
    ///
    /// Other processes may be committing while this runs, and it holds no reader slot: a commit in the
    /// middle would show it a torn state (the file's size from before, a meta from after; one meta old,
    /// the other new). So the check is kept only when both meta pages read the same before and after it
    /// (no commit happened: a writer never writes a page of the newest snapshot, so the pages read were
    /// that snapshot's), and is run again otherwise.
    static func check(directory: String, mayCreate: Bool) throws {
        let file = directory + "/data.mdb"
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return }
            throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "opening \(file)")
        }
        defer { close(fd) }
        try stableRead(fd: fd, file: file) { try checkOnce(fd: fd, file: file, directory: directory, mayCreate: mayCreate) }
    }

    /// The bytes of both meta pages that a commit changes (LMDB writes a meta in place): each page's
    /// header and `MDB_meta`, the second one page size after the first (as the first meta records it).
    static func metaBytes(fd: Int32) -> [UInt8] {
        func read(at offset: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: pageHeaderSize + metaSize)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            return Array(bytes.prefix(max(0, got)))
        }
        let first = read(at: 0)
        guard first.count == pageHeaderSize + metaSize else { return first }
        let pageSize = first.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: pageHeaderSize + 24, as: UInt32.self))) }
        guard pageSize >= 512, pageSize <= 65_536, pageSize & (pageSize - 1) == 0 else { return first }
        return first + read(at: pageSize)
    }

    /// Runs `body` until both meta pages read the same before and after it (at most `attempts` times,
    /// backing off between tries), and returns (or throws) what that run did.
    static func stableRead<T>(fd: Int32, file: String, attempts: Int = 200, _ body: () throws -> T) throws -> T {
        for attempt in 0..<attempts {
            let before = metaBytes(fd: fd)
            let outcome = Result { try body() }
            if metaBytes(fd: fd) == before { return try outcome.get() }
            usleep(UInt32(min(200 << min(attempt, 6), 10_000)))  // a commit takes at least an fsync
        }
        throw RecDBError.storage(code: Int32(EAGAIN), message: String(cString: strerror(EAGAIN)),
                                 context: "checking \(file): another process committed during each of \(attempts) reads of its meta pages")
    }

    private static func checkOnce(fd: Int32, file: String, directory: String, mayCreate: Bool) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "reading \(file)")
        }
        let fileSize = UInt64(st.st_size)
        if fileSize == 0 {
            if mayCreate { return }  // LMDB initialises an empty file (an interrupted `init` leaves one)
            throw RecDBError.notADatabase(path: directory, reason: "\(file) is empty")
        }
        guard fileSize >= UInt64(pageHeaderSize + metaSize) else {
            throw RecDBError.notADatabase(path: directory, reason: "\(file) has \(fileSize) bytes, too short for an LMDB file")
        }
        let first = try readMeta(fd: fd, offset: 0, file: file, directory: directory)
        guard first.pageSize >= 512, first.pageSize <= 65_536, first.pageSize & (first.pageSize - 1) == 0 else {
            throw damaged(file, "meta page 0 records page size \(first.pageSize)")
        }
        guard fileSize >= UInt64(2 * first.pageSize) else {
            throw damaged(file, "\(fileSize) bytes cannot hold its two \(first.pageSize)-byte meta pages (truncated)")
        }
        let second = try readMeta(fd: fd, offset: first.pageSize, file: file, directory: directory)
        guard second.pageSize == first.pageSize else {
            throw damaged(file, "meta pages disagree on the page size (\(first.pageSize), \(second.pageSize))")
        }
        // LMDB writes the meta of transaction N into page N mod 2, so the two metas hold consecutive
        // transactions (a fresh file or a copy: 0 and 0 or 1). A larger gap is a damaged txnid, which
        // would make LMDB serve the older snapshot, or garbage, as the newest.
        let gap = first.txnID > second.txnID ? first.txnID - second.txnID : second.txnID - first.txnID
        guard gap <= 1 else {
            throw damaged(file, "meta pages record transactions \(first.txnID) and \(second.txnID), which cannot both be right")
        }
        // A tie happens only in a new file (both 0); otherwise the older meta could be served as the newest.
        guard first.txnID != second.txnID || first.txnID == 0 else {
            throw damaged(file, "both meta pages record transaction \(first.txnID)")
        }
        // The meta LMDB will serve: the higher txnid, the first on a tie.
        let (picked, index) = second.txnID > first.txnID ? (second, 1) : (first, 0)
        let other = index == 0 ? second : first
        // RecDB never drops its tables: a newer meta with an empty main tree after a non-empty one is a
        // damaged txnid that would serve an empty database (and let a writer start over in it).
        guard picked.roots[1].root != invalidPage || other.roots[1].root == invalidPage else {
            throw damaged(file, "meta page \(index) (transaction \(picked.txnID)) has no tables while the older meta has them")
        }
        // Page count and bytes with overflow checked: a last page of 2^64 − 1 (found by the `store` fuzz
        // target) wrapped the count to 0 and then trapped in a message that added 1 to it.
        let (pageCount, countOverflow) = picked.lastPage.addingReportingOverflow(1)
        let (needed, overflow) = pageCount.multipliedReportingOverflow(by: UInt64(picked.pageSize))
        guard picked.lastPage >= 1, !countOverflow, !overflow else {
            throw damaged(file, "meta page \(index) records last page \(picked.lastPage)")
        }
        guard fileSize >= needed else {
            throw damaged(file, "meta page \(index) (txn \(picked.txnID)) needs \(needed) bytes (pages 0…\(picked.lastPage) of \(picked.pageSize)) but the file has \(fileSize): it is truncated")
        }
        for (i, db) in picked.roots.enumerated() {
            if db.root == invalidPage { continue }
            let tree = i == 0 ? "free-list" : "main"
            guard db.root >= 2, db.root <= picked.lastPage, db.depth >= 1, db.depth <= maxDepth, db.pages <= picked.lastPage else {
                throw damaged(file, "meta page \(index) records \(tree) tree root \(db.root), depth \(db.depth), \(db.pages) pages beyond its \(pageCount) pages")
            }
            // The root page must say it is that page and a tree page (a zeroed or overwritten page
            // does not): LMDB would otherwise fail inside its open, or read garbage as a tree.
            var header = [UInt8](repeating: 0, count: pageHeaderSize)
            let offset = db.root * UInt64(picked.pageSize)
            let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            let pgno = header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            let flags = header.withUnsafeBytes { UInt16(littleEndian: $0.loadUnaligned(fromByteOffset: 10, as: UInt16.self)) }
            let isTreePage = flags & 0x03 != 0  // P_BRANCH | P_LEAF
            guard got == pageHeaderSize, pgno == db.root, isTreePage, (db.depth == 1) == (flags & 0x02 != 0) else {
                throw damaged(file, "the \(tree) tree's root page \(db.root) is not a tree page (number \(pgno), flags \(flags)): the file is damaged or zeroed there")
            }
        }
        // LMDB trusts the offsets and sizes inside a page, so a damaged page on the path of a lookup can
        // make it read outside the file. Every open reads the table directory and the `meta` table (the
        // format version, counters): those few pages are checked from the file first, as `verify` does
        // for all of them. (The other tables are not walked here: that would cost a read of the file.)
        if picked.roots[1].root != invalidPage {
            let pages = PageCheck.run(directory: directory, tables: [Table.meta.rawValue], maxProblems: 1)
            if let problem = pages.problems.first { throw damaged(file, problem) }
        }
    }

    private static func damaged(_ file: String, _ detail: String) -> RecDBError {
        .damaged(table: "(file)", key: file, detail: detail)
    }

    private static func readMeta(fd: Int32, offset: Int, file: String, directory: String) throws -> Meta {
        var page = [UInt8](repeating: 0, count: pageHeaderSize + metaSize)
        let got = page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard got == page.count else {
            throw RecDBError.notADatabase(path: directory, reason: "cannot read the meta page at offset \(offset) of \(file)")
        }
        return try page.withUnsafeBytes { p -> Meta in
            func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
            func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
            func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
            let m = pageHeaderSize
            guard u32(m) == metaMagic else {
                if offset == 0 { throw RecDBError.notADatabase(path: directory, reason: "\(file) is not an LMDB file (no LMDB magic number)") }
                throw damaged(file, "meta page at offset \(offset) has no LMDB magic number")
            }
            guard u16(10) & pMeta != 0 else { throw damaged(file, "page at offset \(offset) is not a meta page") }
            guard u32(m + 4) == dataVersion else {
                throw RecDBError.notADatabase(path: directory, reason: "\(file) is LMDB data format \(u32(m + 4)); this build reads format \(dataVersion)")
            }
            let dbs = m + 24
            let roots = (0..<2).map { i -> (root: UInt64, depth: Int, pages: UInt64) in
                let d = dbs + 48 * i
                return (u64(d + 40), Int(u16(d + 6)), u64(d + 8) &+ u64(d + 16) &+ u64(d + 24))
            }
            return Meta(pageSize: Int(u32(dbs)), mapSize: u64(m + 16), lastPage: u64(m + 120), txnID: u64(m + 128), roots: roots)
        }
    }
}
