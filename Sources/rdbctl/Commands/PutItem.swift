import ArgumentParser
import Foundation
import RecDB

struct PutItem: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put-item", abstract: "Create or update one item (embedded on insert when a space has an encoder attached).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "External item id.") var id: String
    @Option(help: "Title.") var title: String?
    @Option(help: "Free text.") var text: String?
    @Option(help: "Attributes as a JSON object.") var attributes: String?
    @Flag(help: "Mark the item unavailable.") var unavailable = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        let database = try db.open()
        let item = try reportingErrors { () throws -> Item in
            try database.write { tx in
                let internalID = try tx.upsertItem(ItemInput(externalID: id, title: title, text: text, attributesJSON: attributes, isAvailable: !unavailable))
                return try tx.item(id: internalID)!
            }
        }
        if output.json { try printJSON(item); return }
        let spaces = try database.read { tx in try tx.spaces().filter { try tx.vector(space: $0.name, entity: item.id) != nil }.map(\.name) }
        print("stored item \(item.externalID) (#\(item.id))" + (spaces.isEmpty ? "" : "; vectors in \(spaces.joined(separator: ", "))"))
    }
}

struct AddEvent: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add-event", abstract: "Append one interaction (the user is created when new).")
    @OptionGroup var db: DatabaseArgument
    @Argument(help: "External user id.") var user: String
    @Argument(help: "External item id (must exist).") var item: String
    @Option(help: "Event type.") var type: String?
    @Option(help: "Value (rating, price, …).") var value: Float?
    @Option(help: "Timestamp (default: now).") var timestamp: Int64?

    func run() throws {
        let database = try db.open()
        let seq = try reportingErrors {
            try database.write { tx -> UInt64 in
                guard let itemID = try tx.itemID(for: item) else { throw RecDBError.unknownItem(item) }
                let userID = try tx.upsertUser(externalID: user)
                return try tx.appendEvent(user: userID, item: itemID, timestamp: timestamp ?? Int64(Date().timeIntervalSince1970), type: type, value: value)
            }
        }
        print("event \(seq): \(user) → \(item)")
    }
}
