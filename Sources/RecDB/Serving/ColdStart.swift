import Foundation
import Learn

extension Database {
    /// Cold-start items: when a vector is written into the text space of an active `text` / `text+id`
    /// model for an item the model was not trained on, the item's model-space vector is computed by
    /// the model's adapter and written into the model's item space — in the same transaction, so the
    /// item is recommendable and searchable the moment the insert commits, without retraining.
    func applyColdStart(_ tx: WriteTransaction) throws {
        let changedSpaces = Set(tx.changedVectors.keys)
        guard !changedSpaces.isEmpty else { return }
        for name in try tx.modelNames() {
            guard let header = try tx.modelHeader(name), let active = header.activeVersion,
                  let info = try tx.modelVersionInfo(name, active), info.configuration.items != .id,
                  let textSpace = info.textSpace, let changed = tx.changedVectors[textSpace] else { continue }
            let newItems = changed.filter { Int($0) > info.numItems }.sorted()
            guard !newItems.isEmpty else { continue }
            let model = try loadedModel(tx, info)
            let target = Database.itemSpaceName(model: name, version: active)
            guard try tx.space(named: target) != nil else { continue }
            for item in newItems {
                guard let text = try tx.vector(space: textSpace, entity: item) else { continue }
                let vector: [Float]
                do { vector = try model.recommender.itemVector(fromTextEmbedding: text) } catch {
                    throw RecDBError.training("cold-start vector of item #\(item) for \(name)@\(active): \(error)")
                }
                try tx.putVector(space: target, entity: item, vector)
            }
        }
    }
}
