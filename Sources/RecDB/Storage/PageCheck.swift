import Foundation

/// Walks LMDB's B-trees in `data.mdb` with plain reads, checking every page that LMDB would follow
/// before `verify` lets LMDB walk them.
///
/// Why: upstream LMDB 0.9 trusts everything inside a page (RecDB's build checks each page it reads,
/// see Sources/CLMDB/patches, but only the pages a lookup visits, and a child only against its own
/// parent's separators). `verify` walks every page of every tree from the file: one flipped byte in
/// a page would make upstream LMDB read outside it, and a flipped separator key in a branch page
/// sends lookups to the wrong child. This check bounds every offset and size by its page (and overflow values by their pages),
/// checks that keys are in order inside each page and within their parent's separators, and that
/// every leaf sits at the depth the tree records. It reads the file, not the map, so damage is a
/// finding, never a crash.
///
/// Layout (LMDB 0.9.24, 64-bit): page header u64 pgno, u16 pad, u16 flags (1 branch, 2 leaf,
/// 4 overflow, 8 meta, 0x20 leaf2), u16 lower, u16 upper (u32 page count for overflow pages), then
/// u16 node offsets. Node: u16 lo, u16 hi, u16 flags, u16 key size, key, data. A branch node's
/// child is lo | hi << 16 | flags << 32; a leaf's data size is lo | hi << 16, its flags 1 (data on
/// overflow pages: an u64 page number follows the key), 2 (a named table: a 48-byte MDB_db).
struct PageCheck {
    let fd: Int32
    let pageSize: Int
    let lastPage: UInt64
    var problems: [String] = []
    var visited = Set<UInt64>()
    var pagesChecked = 0
    /// The named tables to walk (nil: all of them).
    var tables: Set<String>?

    static let pBranch: UInt16 = 0x01, pLeaf: UInt16 = 0x02, pOverflow: UInt16 = 0x04, pLeaf2: UInt16 = 0x20
    static let fBigData: UInt16 = 0x01, fSubData: UInt16 = 0x02, fDupData: UInt16 = 0x04
    static let header = 16

    /// Checks every tree of the database at `directory` (only `tables` among the named ones, when given);
    /// returns the problems found (empty when sound).
    static func run(directory: String, tables: Set<String>? = nil, maxProblems: Int = 20) -> (problems: [String], pages: Int) {
        let file = directory + "/data.mdb"
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return (["cannot open \(file): \(String(cString: strerror(errno)))"], 0) }
        defer { close(fd) }
        // A commit by another process while the pages are read can show a torn state (a meta newer than
        // the pages walked, a meta half written): problems found then are not believed unless both meta
        // pages read the same before and after the walk.
        for attempt in 0..<50 {
            let before = DataFileCheck.metaBytes(fd: fd)
            let result = walk(fd: fd, file: file, directory: directory, tables: tables, maxProblems: maxProblems)
            if result.problems.isEmpty || DataFileCheck.metaBytes(fd: fd) == before { return result }
            usleep(UInt32(min(200 << min(attempt, 6), 10_000)))
        }
        return (["\(file) changed during each of 50 walks of its pages (another process committing)"], 0)
    }

    private static func walk(fd: Int32, file: String, directory: String, tables: Set<String>?, maxProblems: Int) -> (problems: [String], pages: Int) {
        guard let meta = try? DataFileCheck.newestMeta(fd: fd, directory: directory) else {
            return (["the meta pages of \(file) are damaged (see `Database(path:)`'s error)"], 0)
        }
        var check = PageCheck(fd: fd, pageSize: meta.pageSize, lastPage: meta.lastPage)
        check.tables = tables
        let main = meta.roots[1]
        if main.root != DataFileCheck.invalidPage {
            check.tree(root: main.root, depth: main.depth, name: "main", isMain: true, maxProblems: maxProblems)
        }
        return (check.problems, check.pagesChecked)
    }

    private func read(_ page: UInt64, count: Int) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: count)
        let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(page) * off_t(pageSize)) }
        return got == count ? buf : nil
    }

    private mutating func tree(root: UInt64, depth: Int, name: String, isMain: Bool, maxProblems: Int) {
        guard depth >= 1, depth <= DataFileCheck.maxDepth else { problems.append("table \(name) records depth \(depth)"); return }
        var stack: [(page: UInt64, level: Int, low: [UInt8]?, high: [UInt8]?)] = [(root, 1, nil, nil)]
        var subtrees: [(UInt64, Int, String)] = []
        while let (pgno, level, low, high) = stack.popLast(), problems.count < maxProblems {
            func bad(_ text: String) { problems.append("table \(name), page \(pgno): \(text)") }
            guard pgno >= 2, pgno <= lastPage else { bad("page number beyond the file's \(lastPage + 1) pages"); continue }
            guard visited.insert(pgno).inserted else { bad("page reached twice"); continue }
            guard let page = read(pgno, count: pageSize) else { bad("cannot be read"); continue }
            pagesChecked += 1
            func u16(_ o: Int) -> Int { Int(page[o]) | Int(page[o + 1]) << 8 }
            func u64(_ o: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(page[o + $1]) << (8 * $1) } }
            let flags = UInt16(u16(10))
            guard u64(0) == pgno else { bad("its header says page \(u64(0))"); continue }
            let isLeaf = flags & Self.pLeaf != 0, isBranch = flags & Self.pBranch != 0
            guard isLeaf != isBranch, flags & (Self.pOverflow | Self.pLeaf2) == 0 else { bad("flags \(flags) are not a branch or leaf page"); continue }
            guard isLeaf == (level == depth) else { bad(isLeaf ? "a leaf at level \(level) of a \(depth)-level tree" : "a branch at the leaf level"); continue }
            let lower = u16(12), upper = u16(14)
            guard lower >= Self.header, (lower - Self.header) % 2 == 0, lower <= upper, upper <= pageSize else {
                bad("free-space bounds \(lower)…\(upper) are impossible"); continue
            }
            let count = (lower - Self.header) / 2
            guard count >= 1 else { bad("no entries"); continue }
            var previous: [UInt8]? = nil
            var children: [(UInt64, [UInt8]?, [UInt8]?)] = []
            for i in 0..<count {
                let off = u16(Self.header + 2 * i)
                guard off >= upper, off + 8 <= pageSize else { bad("entry \(i) at offset \(off) is outside the page's data"); break }
                let lo = UInt64(u16(off)), hi = UInt64(u16(off + 2)), nflags = UInt16(u16(off + 4)), ksize = u16(off + 6)
                let keyStart = off + 8
                guard keyStart + ksize <= pageSize else { bad("entry \(i)'s key of \(ksize) bytes runs past the page"); break }
                let key = Array(page[keyStart..<(keyStart + ksize)])
                // Order: inside the page, and inside the separators the parent gave this page. A branch's
                // first key is implicit (empty).
                let ordered = isBranch && i == 0 ? true : (previous.map { lexicographicallyPrecedes($0, key) } ?? true)
                    && (low.map { !lexicographicallyPrecedes(key, $0) } ?? true) && (high.map { lexicographicallyPrecedes(key, $0) } ?? true)
                guard ordered else { bad("entry \(i)'s key is out of order"); break }
                if !(isBranch && i == 0) { previous = key }
                if isBranch {
                    let child = lo | hi << 16 | UInt64(nflags) << 32
                    children.append((child, i == 0 ? low : key, nil))
                    continue
                }
                let dsize = Int(lo | hi << 16)
                let dataStart = keyStart + ksize
                guard nflags & Self.fDupData == 0 else { bad("entry \(i) has duplicate data, which RecDB never writes"); break }
                if nflags & Self.fBigData != 0 {
                    guard dataStart + 8 <= pageSize else { bad("entry \(i)'s overflow page number runs past the page"); break }
                    let opg = u64(dataStart)
                    guard opg >= 2, opg <= lastPage, let oh = read(opg, count: Self.header) else { bad("entry \(i) points at overflow page \(opg), beyond the file"); break }
                    let ohPgno = (0..<8).reduce(UInt64(0)) { $0 | UInt64(oh[$1]) << (8 * $1) }
                    let oflags = UInt16(oh[10]) | UInt16(oh[11]) << 8
                    let pages = UInt64(oh[12]) | UInt64(oh[13]) << 8 | UInt64(oh[14]) << 16 | UInt64(oh[15]) << 24
                    guard ohPgno == opg, oflags & Self.pOverflow != 0, pages >= 1, opg + pages - 1 <= lastPage,
                          UInt64(dsize) + UInt64(Self.header) <= pages * UInt64(pageSize) else {
                        bad("entry \(i)'s value of \(dsize) bytes does not fit its overflow pages \(opg)+\(pages)"); break
                    }
                    for p in opg..<(opg + pages) where !visited.insert(p).inserted { bad("overflow page \(p) is used twice"); break }
                } else {
                    guard dataStart + dsize <= pageSize else { bad("entry \(i)'s value of \(dsize) bytes runs past the page"); break }
                    if nflags & Self.fSubData != 0 {
                        guard isMain, dsize == 48 else { bad("entry \(i) is a malformed table record"); break }
                        let d = dataStart
                        let subDepth = u16(d + 6), subRoot = u64(d + 40)
                        let subName = String(decoding: key, as: UTF8.self)
                        if subRoot != DataFileCheck.invalidPage, tables?.contains(subName) ?? true { subtrees.append((subRoot, subDepth, subName)) }
                    }
                }
            }
            // Each child holds the keys from its separator up to the next one.
            for (j, c) in children.enumerated() {
                let next = j + 1 < children.count ? children[j + 1].1 : high
                stack.append((c.0, level + 1, j == 0 ? low : c.1, next))
            }
        }
        for (root, d, n) in subtrees where problems.count < maxProblems {
            tree(root: root, depth: d, name: n, isMain: false, maxProblems: maxProblems)
        }
    }
}

/// LMDB's default key order: bytewise, a prefix before its extensions.
private func lexicographicallyPrecedes(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }
