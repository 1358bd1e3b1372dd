import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One parsed event on its way from the file to `user_events`.
struct EventRecord {
    var timestamp: Int64
    var sequence: UInt64
    var user: UInt32
    var item: UInt32
    var valueBits: UInt32
    var typeCode: UInt16
    var hasValue: Bool

    @inline(__always)
    func precedes(_ o: EventRecord) -> Bool {
        if user != o.user { return user < o.user }
        if timestamp != o.timestamp { return timestamp < o.timestamp }
        return sequence < o.sequence
    }

    var stored: StoredEvent {
        StoredEvent(timestamp: timestamp, sequence: sequence, item: item, typeCode: typeCode, value: hasValue ? Float(bitPattern: valueBits) : nil)
    }
}

/// External sort of an import's events into (user, timestamp, sequence) order in bounded memory.
///
/// Events arrive in file (= sequence) order into a buffer of `capacity` records. A full buffer is
/// sorted — a stable radix sort on the user, then each user's events put in time order (already so
/// when the file is in time order, as app logs are) — and spilled to a temporary file as compact
/// varint deltas (~8 bytes an event). `merge` then streams every run through a k-way heap merge: time
/// is linear in the rows; memory is `capacity` records (twice while sorting) plus the merge's read
/// buffers, 32 MiB in all however many runs there are (1 MiB each up to 32 runs, at least 64 KiB each).
///
/// Spill files are unlinked as soon as they are created (`O_TMPFILE`, or `mkstemp` then `unlink`):
/// nothing is left behind on any exit path, `kill -9` included.
final class EventRunSorter {
    let capacity: Int
    let directory: String
    // Hot per-row state of final classes used from one thread: no dynamic exclusivity bookkeeping
    // (swift_beginAccess was 8 % of an import's time).
    @exclusivity(unchecked) private var buffer: UnsafeMutablePointer<EventRecord>
    private var scratch: UnsafeMutablePointer<EventRecord>?
    @exclusivity(unchecked) private(set) var count = 0
    private var runs: [SpillRun] = []
    private(set) var spilledBytes = 0
    var spilledRuns: Int { runs.count }

    init(capacity: Int, directory: String) {
        // Unreachable from input: `InteractionImporter.init` throws for `runEvents` below 2 before building the sorter.
        precondition(capacity >= 2, "a run holds at least two events")
        self.capacity = capacity
        self.directory = directory
        buffer = .allocate(capacity: capacity)
    }

    deinit {
        buffer.deallocate()
        scratch?.deallocate()
        for run in runs { close(run.fd) }
    }

    @inline(__always)
    func add(_ record: EventRecord) throws {
        // Spilled before writing, not after: a spill that fails leaves the buffer full, and a later add
        // (none is made after a failure, but nothing here relies on that) must not write past it.
        if count == capacity { try spill() }
        buffer[count] = record
        count += 1
    }

    var isFull: Bool { count == capacity }

    /// Changes the record added `index`-th since the last spill, in place: an import fills in ids it
    /// learns after adding the record, before the buffer is sorted or spilled.
    @inline(__always)
    func update(_ index: Int, _ body: (inout EventRecord) -> Void) {
        // Unreachable from input: the importer passes places of records it added since the last spill.
        precondition(index < count, "a buffered record's place")
        body(&buffer[index])
    }

    /// Sorts the buffered records in place.
    func sortBuffer() {
        let n = count
        guard n > 1 else { return }
        if scratch == nil { scratch = .allocate(capacity: capacity) }
        var src = buffer, dst = scratch!
        var maxUser: UInt32 = 0
        for i in 0..<n where buffer[i].user > maxUser { maxUser = buffer[i].user }
        // LSD radix on the user id, 16 bits a pass (one pass when ids fit in 16 bits): stable, so each
        // user's events stay in sequence order.
        var shift: UInt32 = 0
        var counts = [Int](repeating: 0, count: 1 << 16)
        repeat {
            for i in 0..<counts.count { counts[i] = 0 }
            for i in 0..<n { counts[Int((src[i].user >> shift) & 0xFFFF)] += 1 }
            var sum = 0
            for i in 0..<counts.count { let c = counts[i]; counts[i] = sum; sum += c }
            for i in 0..<n {
                let d = Int((src[i].user >> shift) & 0xFFFF)
                dst[counts[d]] = src[i]
                counts[d] += 1
            }
            swap(&src, &dst)
            shift += 16
        } while shift < 32 && maxUser >> shift != 0
        if src != buffer { buffer.update(from: src, count: n) }
        // Within a user, time order: usually already so; otherwise sort that user's slice.
        var start = 0
        while start < n {
            var end = start + 1
            var ordered = true
            while end < n && buffer[end].user == buffer[start].user {
                if buffer[end].precedes(buffer[end - 1]) { ordered = false }
                end += 1
            }
            if !ordered {
                var slice = UnsafeMutableBufferPointer(start: buffer + start, count: end - start)
                slice.sort { $0.precedes($1) }
            }
            start = end
        }
    }

    /// Sorts the buffer and writes it to a new unlinked temporary file.
    func spill() throws {
        sortBuffer()
        let fd = try Self.temporaryFile(in: directory)
        var run = SpillRun(fd: fd, bytes: 0)
        do {
            let writer = RunWriter(fd: fd, directory: directory)
            for i in 0..<count { try writer.write(buffer[i]) }
            run.bytes = try writer.finish()
        } catch {
            close(fd)
            throw error
        }
        runs.append(run)
        spilledBytes += run.bytes
        count = 0
    }

    /// Streams every event in (user, timestamp, sequence) order: the spilled runs and what is still
    /// buffered (sorted in memory, not written).
    func merge(_ body: (EventRecord) throws -> Void) throws {
        sortBuffer()
        // The radix sort's copy is not needed again: give its memory back before the merge's buffers.
        scratch?.deallocate()
        scratch = nil
        let readBuffer = min(1 << 20, max(1 << 16, (32 << 20) / max(1, runs.count)))
        var sources: [RunSource] = runs.map { FileRunSource(run: $0, directory: directory, bufferBytes: readBuffer) }
        if count > 0 { sources.append(MemoryRunSource(buffer, count: count)) }
        var heads: [EventRecord] = []
        var heap: [Int] = []
        for (i, s) in sources.enumerated() {
            if let r = try s.next() { heads.append(r); heap.append(i) } else { heads.append(EventRecord(timestamp: 0, sequence: 0, user: 0, item: 0, valueBits: 0, typeCode: 0, hasValue: false)) }
        }
        // Min-heap of source indices by their head record.
        func less(_ a: Int, _ b: Int) -> Bool { heads[a].precedes(heads[b]) }
        func siftDown(_ from: Int) {
            var i = from
            let n = heap.count
            while true {
                var c = 2 * i + 1
                if c >= n { return }
                if c + 1 < n && less(heap[c + 1], heap[c]) { c += 1 }
                if !less(heap[c], heap[i]) { return }
                heap.swapAt(i, c)
                i = c
            }
        }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        while let top = heap.first {
            try body(heads[top])
            if let r = try sources[top].next() {
                heads[top] = r
            } else {
                heap[0] = heap[heap.count - 1]
                heap.removeLast()
            }
            // Consecutive events of a user usually come from the same run: one comparison keeps it on top.
            siftDown(0)
        }
    }

    /// A temporary file in `directory` that has no name (nothing to clean up, even after `kill -9`).
    static func temporaryFile(in directory: String) throws -> Int32 {
        #if os(Linux)
        // O_TMPFILE (__O_TMPFILE | O_DIRECTORY): Glibc's module does not export the macro.
        let oTmpFile: Int32 = 0o20_000_000 | O_DIRECTORY
        let fd = open(directory, oTmpFile | O_RDWR | O_CLOEXEC, 0o600)
        if fd >= 0 { return fd }
        #endif
        var template = Array((directory + "/.recdb-import-XXXXXX").utf8CString)
        let named = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard named >= 0 else {
            throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "creating a temporary file in \(directory) for the import's sort")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return named
    }
}

struct SpillRun {
    let fd: Int32
    var bytes: Int
}

protocol RunSource {
    func next() throws -> EventRecord?
}

final class MemoryRunSource: RunSource {
    let base: UnsafeMutablePointer<EventRecord>
    let count: Int
    @exclusivity(unchecked) var index = 0
    init(_ base: UnsafeMutablePointer<EventRecord>, count: Int) { self.base = base; self.count = count }
    func next() throws -> EventRecord? {
        guard index < count else { return nil }
        defer { index += 1 }
        return base[index]
    }
}

/// Varint delta encoding of a sorted run: user Δ; for the same user timestamp Δ (≥ 0) and zigzag
/// sequence Δ, for a new user the zigzag timestamp and the sequence; the item; type code << 1 | has
/// value; the value's f32 bits when present. At most 46 bytes a record.
private enum RunCodec {
    static let maxRecordBytes = 5 + 10 + 10 + 5 + 3 + 4 + 9
}

final class RunWriter {
    let fd: Int32
    let directory: String
    private let capacity = 1 << 20
    private let buffer: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var used = 0
    private var total = 0
    @exclusivity(unchecked) private var previous = EventRecord(timestamp: 0, sequence: 0, user: 0, item: 0, valueBits: 0, typeCode: 0, hasValue: false)

    init(fd: Int32, directory: String) {
        self.fd = fd
        self.directory = directory
        buffer = .allocate(capacity: capacity)
    }
    deinit { buffer.deallocate() }

    @inline(__always)
    func write(_ r: EventRecord) throws {
        if used + RunCodec.maxRecordBytes > capacity { try flush() }
        let p = buffer + used
        var n = Varint.write(UInt64(r.user &- previous.user), to: p)
        if r.user == previous.user {
            n += Varint.write(UInt64(bitPattern: r.timestamp &- previous.timestamp), to: p + n)
            n += Varint.write(Varint.zigzag(Int64(bitPattern: r.sequence &- previous.sequence)), to: p + n)
        } else {
            n += Varint.write(Varint.zigzag(r.timestamp), to: p + n)
            n += Varint.write(r.sequence, to: p + n)
        }
        n += Varint.write(UInt64(r.item), to: p + n)
        n += Varint.write(UInt64(r.typeCode) << 1 | (r.hasValue ? 1 : 0), to: p + n)
        if r.hasValue {
            (p + n).withMemoryRebound(to: UInt8.self, capacity: 4) { q in
                withUnsafeBytes(of: r.valueBits.littleEndian) { for i in 0..<4 { q[i] = $0[i] } }
            }
            n += 4
        }
        used += n
        previous = r
    }

    private func flush() throws {
        var done = 0
        while done < used {
            let w = Glibc.write(fd, buffer + done, used - done)
            guard w > 0 else {
                throw RecDBError.storage(code: errno, message: String(cString: strerror(errno)), context: "writing the import's sort run in \(directory) (is the disk full?)")
            }
            done += w
        }
        total += used
        used = 0
    }

    func finish() throws -> Int {
        try flush()
        return total
    }
}

final class FileRunSource: RunSource {
    let run: SpillRun
    let directory: String
    private let capacity: Int
    private let buffer: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    private var fileOffset = 0
    @exclusivity(unchecked) private var previous = EventRecord(timestamp: 0, sequence: 0, user: 0, item: 0, valueBits: 0, typeCode: 0, hasValue: false)

    /// `bufferBytes`: the read buffer (at least a few records' worth).
    init(run: SpillRun, directory: String, bufferBytes: Int = 1 << 20) {
        self.run = run
        self.directory = directory
        capacity = max(bufferBytes, 4 * RunCodec.maxRecordBytes)
        buffer = .allocate(capacity: capacity)
    }
    deinit { buffer.deallocate() }

    private func refill() throws {
        let keep = end - start
        if keep > 0 { memmove(buffer, buffer + start, keep) }
        start = 0
        end = keep
        while end < capacity && fileOffset < run.bytes {
            let n = pread(run.fd, buffer + end, min(capacity - end, run.bytes - fileOffset), off_t(fileOffset))
            guard n > 0 else {
                throw RecDBError.storage(code: errno, message: n == 0 ? "unexpected end" : String(cString: strerror(errno)), context: "reading the import's sort run in \(directory)")
            }
            end += n
            fileOffset += n
        }
    }

    @inline(__always)
    private func varint() throws -> UInt64 {
        var result: UInt64 = 0, shift: UInt64 = 0
        while start < end {
            let b = buffer[start]
            start += 1
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { break }
        }
        // Written by this process moments ago: anything else is a failing disk or a bug.
        throw RecDBError.storage(code: -1, message: "malformed record", context: "reading the import's sort run in \(directory)")
    }

    func next() throws -> EventRecord? {
        if end - start < RunCodec.maxRecordBytes && fileOffset < run.bytes { try refill() }
        guard start < end else { return nil }
        var r = previous
        let du = try varint()
        r.user = previous.user &+ UInt32(truncatingIfNeeded: du)
        if du == 0 {
            r.timestamp = previous.timestamp &+ Int64(bitPattern: try varint())
            r.sequence = UInt64(bitPattern: Int64(bitPattern: previous.sequence) &+ Varint.unzigzag(try varint()))
        } else {
            r.timestamp = Varint.unzigzag(try varint())
            r.sequence = try varint()
        }
        r.item = UInt32(truncatingIfNeeded: try varint())
        let tv = try varint()
        r.typeCode = UInt16(truncatingIfNeeded: tv >> 1)
        r.hasValue = tv & 1 != 0
        if r.hasValue {
            guard end - start >= 4 else { throw RecDBError.storage(code: -1, message: "malformed record", context: "reading the import's sort run in \(directory)") }
            var bits: UInt32 = 0
            for i in 0..<4 { bits |= UInt32(buffer[start + i]) << (8 * UInt32(i)) }
            r.valueBits = bits
            start += 4
        } else {
            r.valueBits = 0
        }
        previous = r
        return r
    }
}

/// Byte-keyed open-addressing map from external ids to internal ids (no String per row). A slot is 16
/// bytes: hash and id, then the key itself when it has at most 7 bytes (`u123456`: one cache line
/// holds the whole comparison) or its place in an arena. Grows at half load.
///
/// A class (one owner, the importer; never copied), its slots in their own memory (`SlotTable`).
final class ExternalIDMap {
    // Probed for every row of a bulk import, from one thread: no dynamic exclusivity bookkeeping.
    @exclusivity(unchecked) private var table: SlotTable
    @exclusivity(unchecked) private var arena: [UInt8] = []
    @exclusivity(unchecked) private(set) var count = 0
    @exclusivity(unchecked) private var mask: Int

    fileprivate struct Slot {
        /// 0 = empty; else hash << 32 | id (ids are ≥ 1).
        var tag: UInt64
        /// Inline (top bit set): length << 56 | the key's bytes, little-endian. Else arena offset << 16 | length.
        var key: UInt64
    }

    /// Zeroed slots (tag 0: empty). From 2 MiB, an anonymous mapping aligned to 2 MiB with transparent
    /// huge pages asked for (`MADV_HUGEPAGE`: under THP mode `madvise`, Debian's, only advised memory gets them): the user map of a
    /// 1M-user import is 32 MiB, 8,192 small pages — more than the TLB holds — and with every row a
    /// random user, nearly every lookup (and its prefetch) walked the page tables (perf at 50M rows: the
    /// prefetch instruction was 43 % of the row's own time once the cache misses were overlapped).
    fileprivate final class SlotTable {
        let slots: UnsafeMutablePointer<Slot>
        let count: Int
        private let mapping: UnsafeMutableRawPointer?
        private let mappedBytes: Int
        static let hugePage = 2 << 20

        init(count: Int) {
            self.count = count
            let bytes = count * MemoryLayout<Slot>.stride
            #if os(Linux)
            if bytes >= Self.hugePage,
               let m = mmap(nil, bytes + Self.hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED {
                mapping = m
                mappedBytes = bytes + Self.hugePage
                let aligned = (Int(bitPattern: m) + Self.hugePage - 1) & ~(Self.hugePage - 1)
                let base = UnsafeMutableRawPointer(bitPattern: aligned)!
                _ = madvise(base, bytes, 14)  // 14 = MADV_HUGEPAGE (Linux); a hint: failure is harmless
                slots = base.bindMemory(to: Slot.self, capacity: count)  // anonymous pages are zero: every slot empty
                return
            }
            #endif
            mapping = nil
            mappedBytes = 0
            slots = .allocate(capacity: count)
            slots.initialize(repeating: Slot(tag: 0, key: 0), count: count)
        }

        deinit {
            if let mapping { munmap(mapping, mappedBytes) } else { slots.deallocate() }
        }
    }

    init(capacity: Int = 1 << 12) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        table = SlotTable(count: n)
        mask = n - 1
    }

    @inline(__always)
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt32 { CRC32C.update(0x9E37_79B9, key) }

    @inline(__always)
    private func slot(_ hash: UInt32) -> Int { Int(truncatingIfNeeded: (UInt64(hash) &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask }

    /// The inline form of a key of at most 7 bytes, or nil.
    @inline(__always)
    private static func inline(_ key: UnsafeRawBufferPointer) -> UInt64? {
        let n = key.count
        guard n <= 7 else { return nil }
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(key[i]) << (8 * UInt64(i)) }
        return 1 << 63 | UInt64(n) << 56 | v
    }

    @inline(__always)
    func find(_ key: UnsafeRawBufferPointer, hash: UInt32) -> UInt32? {
        let short = Self.inline(key)
        var i = slot(hash)
        let slots = table.slots
        while true {
            let s = slots[i]
            if s.tag == 0 { return nil }
            if UInt32(truncatingIfNeeded: s.tag >> 32) == hash {
                if let short {
                    if s.key == short { return UInt32(truncatingIfNeeded: s.tag) }
                } else if s.key >> 63 == 0 {
                    let length = Int(s.key & 0xFFFF), offset = Int(s.key >> 16)
                    if length == key.count && arena.withUnsafeBytes({ memcmp($0.baseAddress! + offset, key.baseAddress!, length) == 0 }) {
                        return UInt32(truncatingIfNeeded: s.tag)
                    }
                }
            }
            i = (i + 1) & mask
        }
    }

    /// Starts loading the slot a lookup of `hash` probes first (a hint: see `PendingRows`).
    @inline(__always)
    func prefetch(hash: UInt32) {
        recdb_prefetch(table.slots + slot(hash))
    }

    /// Adds a key known to be absent.
    func insert(_ key: UnsafeRawBufferPointer, hash: UInt32, id: UInt32) {
        if (count + 1) * 2 > table.count { grow() }
        let ref: UInt64
        if let short = Self.inline(key) {
            ref = short
        } else {
            ref = UInt64(arena.count) << 16 | UInt64(key.count)
            arena.append(contentsOf: key)
        }
        place(Slot(tag: UInt64(hash) << 32 | UInt64(id), key: ref), in: table.slots)
        count += 1
    }

    /// Replaces the id of a key known to be present (a provisional number by the stored or created id).
    func setID(_ key: UnsafeRawBufferPointer, hash: UInt32, id: UInt32) {
        let short = Self.inline(key)
        var i = slot(hash)
        let slots = table.slots
        while true {
            let s = slots[i]
            // Unreachable: the importer replaces only ids it put in this map.
            precondition(s.tag != 0, "a key present in the id map")
            if UInt32(truncatingIfNeeded: s.tag >> 32) == hash {
                let same: Bool
                if let short {
                    same = s.key == short
                } else if s.key >> 63 == 0 {
                    let length = Int(s.key & 0xFFFF), offset = Int(s.key >> 16)
                    same = length == key.count && arena.withUnsafeBytes { memcmp($0.baseAddress! + offset, key.baseAddress!, length) == 0 }
                } else {
                    same = false
                }
                if same {
                    slots[i].tag = UInt64(hash) << 32 | UInt64(id)
                    return
                }
            }
            i = (i + 1) & mask
        }
    }

    /// Forgets every key, keeping the slot table (its memory already faulted in).
    func removeAll() {
        table.slots.update(repeating: Slot(tag: 0, key: 0), count: table.count)
        arena.removeAll(keepingCapacity: true)
        count = 0
    }

    private func place(_ entry: Slot, in slots: UnsafeMutablePointer<Slot>) {
        var i = slot(UInt32(truncatingIfNeeded: entry.tag >> 32))
        while slots[i].tag != 0 { i = (i + 1) & mask }
        slots[i] = entry
    }

    private func grow() {
        let old = table
        table = SlotTable(count: old.count * 2)
        mask = table.count - 1
        for i in 0..<old.count where old.slots[i].tag != 0 { place(old.slots[i], in: table.slots) }
    }
}

/// A 64-bit fingerprint of an import's data lines for the ledger, eight bytes a step (a byte-wise FNV
/// cost a second per gigabyte). Line breaks are mixed in, so line boundaries count; the terminator
/// (LF, CR LF, CR) does not.
struct LineFingerprint {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    mutating func add(_ line: UnsafeRawBufferPointer) {
        var h = value
        var i = 0
        let n = line.count
        while i + 8 <= n {
            h = (h ^ line.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            i += 8
        }
        h = (h ^ UInt64(truncatingIfNeeded: n)) &* 0xD6E8_FEB8_6659_FD93  // the length: "a" ≠ "a\0"
        var tail: UInt64 = 0x0A  // the line break, then up to 7 remaining bytes
        var shift: UInt64 = 8
        while i < n { tail |= UInt64(line[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        value = h
    }
}
