/// Matrix-product FLOPs of one training epoch, counted analytically from the data (used to report
/// achieved GFLOP/s against the measured `cblas_sgemm` peak). Counts multiply-adds as 2 FLOPs and the
/// forward plus both backward products of every matrix product; element-wise work is not counted.
public enum TrainingCost {
    /// - Returns: FLOPs per epoch of matrix products (output layer, the architecture's body, text adapter),
    ///   over every training window (`ModelConfiguration.windows`); each architecture counts its own
    ///   (`SequenceArchitecture.flopsPerEpoch`; BERT4Rec's scored positions are the expected masked ones).
    public static func flopsPerEpoch(dataset: SequenceDataset, configuration c: ModelConfiguration,
                                     textDimension: Int? = nil) throws -> Double {
        let split = try DatasetSplit.make(dataset, configuration: c)
        // `windows: auto` as training resolves it, so the count covers the windows that are trained.
        let c = c.resolvingAutomaticWindows(train: split.train)
        let n = Double(dataset.numItems), d = Double(c.hiddenSize)
        var (flops, examples) = c.architecture.model.flopsPerEpoch(train: split.train, configuration: c, numItems: dataset.numItems)
        if let t = textDimension, c.items.usesText {
            let steps = Double((examples + c.batchSize - 1) / c.batchSize)
            flops += steps * 4 * n * Double(t) * d
        }
        return flops
    }
}
