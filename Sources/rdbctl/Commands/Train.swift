import ArgumentParser
import Foundation
import RecDB

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a new model version inside the database (SASRec, BERT4Rec or GRU4Rec).")
    @OptionGroup var db: DatabaseArgument
    @Option(help: "Model name.") var model: String
    @Option(help: "sasrec, bert4rec or gru4rec (default sasrec, or the --config file's). Without --config, the defaults are the architecture's (gru4rec: --blocks 1 --dropout 0.3).") var arch: ModelConfiguration.Architecture?
    @Option(help: "id, text:SPACE or text+id:SPACE (default id, or the --config file's items with text:SPACE).") var items: String?
    @Option(help: "Start from this model configuration (JSON, schemas/model-configuration.schema.json); the options below override it.")
    var config: String?
    @Option(help: "Maximum epochs (default 200).") var epochs: Int?
    @Option(help: "Early-stopping patience: validations without a better validation NDCG@10 (default 10).") var patience: Int?
    @Option(help: "Training windows per user: auto (last when histories are at most maxlen on average; on longer ones SASRec trains prefixes:K, K = maxlen / 10, and BERT4Rec stride:N, N = maxlen / 5, with --last-mask-prob 0.5), last (the newest maxlen items), all (the whole history in maxlen windows, every target once per epoch), stride:N, prefixes (SASRec: RecBole's one example per target with its maxlen items of context, loss at the last position) or prefixes:K (a window every K items scoring its newest K positions) (default auto).")
    var windows: String?
    @Option(help: "Validate every N optimiser steps instead of every epoch; patience then counts these validations (default: per epoch).")
    var evalEvery: Int?
    @Option(help: "Early stopping never stops before this many optimiser steps (default 0).") var minSteps: Int?
    @Option(help: "Training loss: ce (full softmax over the catalogue), sampled (softmax over the positive and --negatives shared draws, logQ-corrected) or auto (ce up to 50,000 items, sampled above; default auto).")
    var loss: ModelConfiguration.Loss?
    @Option(help: "Sampled loss: candidates drawn for each quarter of a batch's positions, half from that quarter's targets and half uniform (default 2048).")
    var negatives: Int?
    @Option(help: "Hidden size (default 64).") var hidden: Int?
    @Option(help: "Transformer blocks, or GRU layers with --arch gru4rec (default 2; gru4rec 1).") var blocks: Int?
    @Option(help: "GRU4Rec: GRU state size (default 2 × --hidden).") var gruHidden: Int?
    @Option(help: "Attention heads (default 1 SASRec, 2 BERT4Rec).") var heads: Int?
    @Option(help: "Feed-forward inner size as a multiple of the hidden size (default 1 SASRec, 4 BERT4Rec).") var ffnMult: Int?
    @Option(help: "Feed-forward activation: relu or gelu (default relu SASRec, gelu BERT4Rec).") var activation: String?
    @Option(help: "LayerNorm epsilon (default 1e-8).") var lnEps: Float?
    @Option(help: "Sequence window (default 50).") var maxlen: Int?
    @Option(help: "Batch size (default 256).") var batch: Int?
    @Option(help: "Learning rate (default 1e-3).") var lr: Float?
    @Option(name: .customLong("item-lr"), help: "Sampled loss with id items: learning rate of the item table's rows, which a step updates only where drawn or targeted (default: 5 x --lr above 50,000 items, --lr at or below).") var itemLR: Float?
    @Option(help: "AdamW weight decay (default 1e-4).") var weightDecay: Float?
    @Option(help: "AdamW beta1 (default 0.9).") var beta1: Float?
    @Option(help: "AdamW beta2 (default 0.98).") var beta2: Float?
    @Option(help: "AdamW epsilon (default 1e-8).") var adamEps: Float?
    @Option(help: "Clip gradients to this global L2 norm (default: no clipping).") var clip: Float?
    @Option(help: "Dropout (default 0.2; gru4rec 0.3, on the item vectors).") var dropout: Float?
    @Option(help: "BERT4Rec mask probability (default 0.2).") var maskProb: Float?
    @Option(help: "BERT4Rec: probability that a training window masks only its last item, the next-item task of evaluation (RecBole's ft_ratio; default 0.5 when --windows auto resolves to stride windows on long histories, else 0).")
    var lastMaskProb: Float?
    @Option(help: "Worker threads (default 0 = all cores; results are reproducible for a seed and thread count).") var threads: Int?
    @Flag(help: "Exclude each user's history items when ranking during validation and test (default off).") var excludeSeen = false
    @Option(help: "Users evaluated in validation and test, each ranked exactly over the whole catalogue: N = a fixed seeded sample of N users (the same for validation, test and `rdbctl eval` of the version), 0 = all (default: all while users × items ≤ 2^32, else a sample of max(10000, 2^32 / items)).")
    var evalUsers: Int?
    @Option(help: "Random seed (default 0).") var seed: UInt64?
    @Option(help: "loo (leave-one-out) or temporal (default loo).") var split: String?
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
    @Option(help: "Write the training curve (loss and valid NDCG@10 per validation) as an SVG to this file.") var plot: String?
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let items, !(items == "id" || items.hasPrefix("text:") || items.hasPrefix("text+id:")) {
            throw ValidationError("--items takes id, text:SPACE or text+id:SPACE")
        }
        guard ["pca", "none"].contains(reduce) else { throw ValidationError("--reduce takes pca or none") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be ≥ 1 (0 would store an untrained version)") }
        for (name, value) in [("--hidden", hidden), ("--blocks", blocks), ("--gru-hidden", gruHidden), ("--heads", heads), ("--maxlen", maxlen), ("--batch", batch), ("--patience", patience), ("--negatives", negatives)] {
            if let value, value < 1 { throw ValidationError("\(name) must be ≥ 1") }
        }
        if let evalUsers, !(0...Int(Int32.max)).contains(evalUsers) { throw ValidationError("--eval-users must be in 0...2147483647 (0 = all users)") }
        if let windows, TrainingWindows(windows) == nil { throw ValidationError("--windows takes auto, last, all, stride:N, prefixes or prefixes:K (N, K ≥ 1)") }
        if let activation { guard ["relu", "gelu"].contains(activation) else { throw ValidationError("--activation takes relu or gelu") } }
        if let split { guard ["loo", "temporal"].contains(split) else { throw ValidationError("--split takes loo or temporal") } }
        if let profileWeight, !(profileWeight >= 0) { throw ValidationError("--profile-weight must be ≥ 0") }
        if let plot {
            // Checked before training: a version is committed before the plot is written.
            let folder = URL(fileURLWithPath: plot).deletingLastPathComponent().path
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue,
                  FileManager.default.isWritableFile(atPath: folder) else {
                throw ValidationError("--plot \(plot): \(folder) is not a writable folder")
            }
        }
        if distill == nil && (profileWeight != nil || profileTargets != nil) {
            throw ValidationError("--profile-weight and --profile-targets need --distill SPACE")
        }
    }

    /// The configuration file's contents (schema-checked), or the defaults.
    func baseConfiguration() throws -> ModelConfiguration {
        guard let config else { return ModelConfiguration(architecture: arch ?? .sasrec) }
        // A configuration is a few hundred bytes; a bound keeps a wrong path (a data file, /dev/zero) from being read whole.
        let size = (try? FileManager.default.attributesOfItem(atPath: config)[.size] as? Int) ?? 0
        guard size <= 1 << 20 else { throw ValidationError("--config \(config): \(size) bytes; a configuration file is at most 1 MiB") }
        guard let data = FileManager.default.contents(atPath: config), data.count <= 1 << 20 else { throw ValidationError("cannot read --config \(config)") }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch { throw ValidationError("--config \(config): not JSON: \(error.localizedDescription)") }
        if let v = try JSONSchema.bundled("model-configuration.schema.json").violation(of: json) {
            throw ValidationError("--config \(config): \(v)")
        }
        // A file that leaves the architecture open takes --arch's, and with it that architecture's defaults
        // for the keys it leaves out (gru4rec: blocks 1, dropout 0.3).
        var decodable = data
        if let arch, var object = json as? [String: Any], object["architecture"] == nil {
            object["architecture"] = arch.rawValue
            decodable = try JSONSerialization.data(withJSONObject: object)
        }
        do { return try JSONDecoder().decode(ModelConfiguration.self, from: decodable) } catch {
            throw ValidationError("--config \(config): \(error)")
        }
    }

    func request() throws -> TrainingRequest {
        var c = try baseConfiguration()
        if let arch { c.architecture = arch }
        if let items { c.items = items == "id" ? .id : items.hasPrefix("text+id:") ? .textAndID : .text }
        if let epochs { c.maxEpochs = epochs }
        if let windows { c.windows = TrainingWindows(windows)! }
        if let evalEvery { c.evaluateEvery = evalEvery }
        if let loss { c.loss = loss }
        if let negatives { c.negatives = negatives }
        if let minSteps { c.minimumSteps = minSteps }
        if let ffnMult { c.feedForwardMultiplier = ffnMult }
        if let activation { c.activation = activation }
        if let lnEps { c.layerNormEpsilon = lnEps }
        if let weightDecay { c.weightDecay = weightDecay }
        if let beta1 { c.beta1 = beta1 }
        if let beta2 { c.beta2 = beta2 }
        if let adamEps { c.adamEpsilon = adamEps }
        if let clip { c.gradientClipNorm = clip }
        if let maskProb { c.maskProbability = maskProb }
        if let lastMaskProb { c.lastMaskProbability = lastMaskProb }
        if let threads { c.threads = threads }
        if excludeSeen { c.maskSeen = true }
        if let evalUsers { c.evaluationUsers = evalUsers }
        if let patience { c.patience = patience }
        if let hidden { c.hiddenSize = hidden }
        if let blocks { c.blocks = blocks }
        if let gruHidden { c.gruHiddenSize = gruHidden }
        if let heads { c.heads = heads }
        if let maxlen { c.maxLength = maxlen }
        if let batch { c.batchSize = batch }
        if let lr { c.learningRate = lr }
        if let itemLR { c.itemTableLearningRate = itemLR }
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
        if let items, let colon = items.firstIndex(of: ":") { r.textSpace = String(items[items.index(after: colon)...]) }
        r.profileSpace = distill
        r.reduceProfilesWithPCA = reduce == "pca"
        r.resume = resume
        r.indexFactory = index
        return r
    }

    func run() throws {
        let database = try db.open()
        var r = try request()
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
        if let plot {
            do { try writeCurvePlot(outcome.curve, title: "\(outcome.model) v\(outcome.version)", to: plot) } catch {
                throw ValidationError("\(outcome.model) version \(outcome.version) was trained and stored, but \(error)")
            }
        }
        if output.json { try printJSON(outcome); return }
        print("trained \(outcome.model) version \(outcome.version): \(outcome.epochs) epochs (best \(outcome.bestEpoch), \(outcome.stopReason)), \(String(format: "%.1f", outcome.secondsPerEpoch)) s/epoch")
        print(String(format: "  valid  recall@10 %.4f  ndcg@10 %.4f  (%ld users)", outcome.valid.recall10, outcome.valid.ndcg10, outcome.valid.users))
        print(String(format: "  test   recall@10 %.4f  ndcg@10 %.4f  recall@20 %.4f  ndcg@20 %.4f  (%ld users)", outcome.test.recall10, outcome.test.ndcg10, outcome.test.recall20, outcome.test.ndcg20, outcome.test.users))
        print("  item vectors in space '\(outcome.itemSpace)', index \(outcome.indexFactory)")
    }
}

extension ModelConfiguration.Architecture: ExpressibleByArgument {}
extension ModelConfiguration.Loss: ExpressibleByArgument {}
extension DistillationConfiguration.Loss: ExpressibleByArgument {}
extension DistillationConfiguration.Pooling: ExpressibleByArgument {}
extension DistillationConfiguration.ProfileTargets: ExpressibleByArgument {}
