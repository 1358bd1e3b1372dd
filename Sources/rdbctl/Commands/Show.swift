import ArgumentParser
import Foundation
import RecDB

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one item or one user (with their ordered history).")

    enum Kind: String, ExpressibleByArgument { case item, user }

    @Argument(help: "item or user.") var kind: Kind
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "External id.") var id: String
    @Option(help: "Show at most this many of the user's latest events.") var last: Int = 50
    @OptionGroup var output: OutputOptions

    struct HistoryEntry: Encodable {
        var item: String
        var title: String?
        var timestamp: Int64
        var type: String
        var value: Float?
    }
    struct UserView: Encodable {
        var user: String
        var id: UInt32
        var attributes: String?
        var events: Int
        var profile: String?
        var history: [HistoryEntry]
    }

    func run() throws {
        let database = try db.open(readOnly: true)
        switch kind {
        case .item:
            let item = try reportingErrors { () throws -> Item in
                guard let item = try database.read({ try $0.item(externalID: id) }) else { throw RecDBError.unknownItem(id) }
                return item
            }
            if output.json { try printJSON(item); return }
            print("item \(item.externalID) (#\(item.id))\(item.isAvailable ? "" : " [unavailable]")\(item.isDeleted ? " [deleted]" : "")")
            if let t = item.title { print("  title: \(t)") }
            if let t = item.text { print("  text: \(t)") }
            if let a = item.attributesJSON { print("  attributes: \(a)") }
        case .user:
            let view = try reportingErrors { () throws -> UserView in
                try database.read { tx in
                    guard let user = try tx.user(externalID: id) else { throw RecDBError.unknownUser(id) }
                    let events = try tx.events(user: user.id, last: last)
                    var total = 0
                    try tx.forEachEventBackwards(user: user.id) { _ in total += 1; return true }
                    let history = try events.map { e -> HistoryEntry in
                        let item = try tx.item(id: e.item)
                        return HistoryEntry(item: item?.externalID ?? "#\(e.item)", title: item?.title, timestamp: e.timestamp, type: e.type, value: e.value)
                    }
                    return UserView(user: user.externalID, id: user.id, attributes: user.attributesJSON, events: total,
                                    profile: try tx.profile(user: user.id)?.text, history: history)
                }
            }
            if output.json { try printJSON(view); return }
            print("user \(view.user) (#\(view.id)): \(view.events) events\(view.events > view.history.count ? ", latest \(view.history.count) shown" : "")")
            if let a = view.attributes { print("  attributes: \(a)") }
            if let p = view.profile { print("  profile: \(p)") }
            for (i, h) in view.history.enumerated() {
                let value = h.value.map { " value=\($0)" } ?? ""
                print(String(format: "  %3d. ", i + 1) + "\(h.item)  \(h.title ?? "(no title)")  [t=\(h.timestamp) \(h.type)\(value)]")
            }
        }
    }
}
