import ArgumentParser
import Foundation
import RecDB

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a new model version inside the database (SASRec or BERT4Rec).")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Model name.") var model: String
    @Option(help: "sasrec or bert4rec.") var arch: ModelConfiguration.Architecture = .sasrec
    @Option(help: "id, text:SPACE or text+id:SPACE.") var items: String = "id"
    @Option(help: "Maximum epochs.") var epochs: Int?
    @Option(help: "Early-stopping patience (epochs without a better validation NDCG@10).") var patience: Int?
    @Option(help: "Hidden size.") var hidden: Int?
    @Option(help: "Transformer blocks.") var blocks: Int?
    @Option(help: "Attention heads.") var heads: Int?
    @Option(help: "Sequence window.") var maxlen: Int?
    @Option(help: "Batch size.") var batch: Int?
    @Option(help: "Learning rate.") var lr: Float?
    @Option(help: "Dropout.") var dropout: Float?
    @Option(help: "Random seed.") var seed: UInt64?
    @Option(help: "loo (leave-one-out) or temporal.") var split: String?
    @Option(help: "Faiss factory of the item index (default: Flat below 50k items, HNSW32 above).") var index: String?
    @Flag(help: "Warm-start from the active version on the current data.") var resume = false
    @Option(help: "Distil user profiles from this user space (ECIR'26).") var distill: String?
    @Option(help: "Distillation weight α.") var alpha: Float?
    @Option(help: "Epochs with distillation.") var distillEpochs: Int?
    @Option(help: "mse, rmse or cosine.") var distillLoss: DistillationConfiguration.Loss?
    @Option(help: "mean, exp or last.") var pooling: DistillationConfiguration.Pooling?
    @Option(help: "Block whose output is distilled (1-based; default the last).") var reconstructionLayer: Int?
    @Option(help: "Weight λ of the profile path's recommendation loss (served scores vs training items; default 1, 0 = off as in the paper).")
    var profileWeight: Float?
    @Option(help: "What the profile path learns to rank first: last (the last training item, default) or all (every training item).")
    var profileTargets: DistillationConfiguration.ProfileTargets?
    @Option(help: "Profile reduction: pca or none.") var reduce: String = "none"
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard items == "id" || items.hasPrefix("text:") || items.hasPrefix("text+id:") else {
            throw ValidationError("--items takes id, text:SPACE or text+id:SPACE")
        }
        guard ["pca", "none"].contains(reduce) else { throw ValidationError("--reduce takes pca or none") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be ≥ 1 (0 would store an untrained version)") }
        for (name, value) in [("--hidden", hidden), ("--blocks", blocks), ("--heads", heads), ("--maxlen", maxlen), ("--batch", batch), ("--patience", patience)] {
            if let value, value < 1 { throw ValidationError("\(name) must be ≥ 1") }
        }
        if let split { guard ["loo", "temporal"].contains(split) else { throw ValidationError("--split takes loo or temporal") } }
        if let profileWeight, !(profileWeight >= 0) { throw ValidationError("--profile-weight must be ≥ 0") }
        if distill == nil && (profileWeight != nil || profileTargets != nil) {
            throw ValidationError("--profile-weight and --profile-targets need --distill SPACE")
        }
    }

    func request() -> TrainingRequest {
        var c = ModelConfiguration(architecture: arch, items: items == "id" ? .id : items.hasPrefix("text+id:") ? .textAndID : .text)
        if let epochs { c.maxEpochs = epochs }
        if let patience { c.patience = patience }
        if let hidden { c.hiddenSize = hidden }
        if let blocks { c.blocks = blocks }
        if let heads { c.heads = heads }
        if let maxlen { c.maxLength = maxlen }
        if let batch { c.batchSize = batch }
        if let lr { c.learningRate = lr }
        if let dropout { c.dropout = dropout }
        if let seed { c.seed = seed }
        if let split { c.split = split == "loo" ? .leaveOneOut : .temporal }
        if distill != nil {
            var d = DistillationConfiguration()
            if let alpha { d.alpha = alpha }
            if let distillEpochs { d.distillEpochs = distillEpochs }
            if let distillLoss { d.loss = distillLoss }
            if let pooling { d.pooling = pooling }
            d.reconstructionLayer = reconstructionLayer
            if let profileWeight { d.profileRecommendationWeight = profileWeight }
            if let profileTargets { d.profileTargets = profileTargets }
            c.distillation = d
        }
        var r = TrainingRequest(model: model, configuration: c)
        if let colon = items.firstIndex(of: ":") { r.textSpace = String(items[items.index(after: colon)...]) }
        r.profileSpace = distill
        r.reduceProfilesWithPCA = reduce == "pca"
        r.resume = resume
        r.indexFactory = index
        return r
    }

    func run() throws {
        let database = try db.open()
        var r = request()
        let maxEpochs = r.configuration.maxEpochs
        let quiet = output.json
        if !quiet || isatty(2) != 0 {
            r.progress = { p in
                guard !quiet else { return }
                FileHandle.standardError.write(Data(String(format: "epoch %3d/%d  loss %.4f%@%@  valid ndcg@10 %.4f recall@10 %.4f  %.1fs (+%.1fs eval)  best %d\n",
                    p.epoch, maxEpochs, p.loss, p.distillationLoss.map { String(format: " distil %.4f", $0) } ?? "",
                    p.profileRecommendationLoss.map { String(format: " profile %.4f", $0) } ?? "",
                    p.valid.ndcg10, p.valid.recall10, p.trainSeconds, p.evaluationSeconds, p.bestEpoch).utf8))
            }
        }
        let outcome = try reportingErrors { try database.train(r) }
        if output.json { try printJSON(outcome); return }
        print("trained \(outcome.model) version \(outcome.version): \(outcome.epochs) epochs (best \(outcome.bestEpoch), \(outcome.stopReason)), \(String(format: "%.1f", outcome.secondsPerEpoch)) s/epoch")
        print(String(format: "  valid  recall@10 %.4f  ndcg@10 %.4f", outcome.valid.recall10, outcome.valid.ndcg10))
        print(String(format: "  test   recall@10 %.4f  ndcg@10 %.4f  recall@20 %.4f  ndcg@20 %.4f", outcome.test.recall10, outcome.test.ndcg10, outcome.test.recall20, outcome.test.ndcg20))
        print("  item vectors in space '\(outcome.itemSpace)', index \(outcome.indexFactory)")
    }
}

extension ModelConfiguration.Architecture: ExpressibleByArgument {}
extension DistillationConfiguration.Loss: ExpressibleByArgument {}
extension DistillationConfiguration.Pooling: ExpressibleByArgument {}
extension DistillationConfiguration.ProfileTargets: ExpressibleByArgument {}
