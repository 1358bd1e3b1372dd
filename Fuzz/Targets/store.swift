// Opening a damaged data.mdb: the input is the file; the database is opened read-only, its stats read
// and its structure verified. Seeds are small real databases (see Fuzz/make-seeds.sh).
import Foundation
@testable import RecDB

func fuzzOne(_ bytes: [UInt8]) {
    let directory = Scratch.directory + "/store"
    try? FileManager.default.removeItem(atPath: directory)
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: directory + "/data.mdb", contents: Data(bytes))
    guard let db = try? Database(path: directory, options: .init(readOnly: true, create: false)) else { return }
    _ = try? db.stats()
    _ = try? db.verify()
}
