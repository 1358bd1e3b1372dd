/// Matrix-product FLOPs of one training epoch, counted analytically from the data (used to report
/// achieved GFLOP/s against the measured `cblas_sgemm` peak). Counts multiply-adds as 2 FLOPs and the
/// forward plus both backward products of every matrix product; element-wise work is not counted.
public enum TrainingCost {
    /// - Returns: FLOPs per epoch of matrix products (output layer, transformer blocks, attention,
    ///   text adapter), over every training window (`ModelConfiguration.windows`). For BERT4Rec the scored positions are the expected number of masked ones.
    public static func flopsPerEpoch(dataset: SequenceDataset, configuration c: ModelConfiguration,
                                     textDimension: Int? = nil) throws -> Double {
        let split = try DatasetSplit.make(dataset, configuration: c)
        let c = c.resolvingAutomaticWindows(train: split.train)
        let d = Double(c.hiddenSize), f = d * Double(c.resolvedFeedForwardMultiplier), n = Double(dataset.numItems)
        var rows = 0.0, scored = 0.0, attention = 0.0, examples = 0
        let sasrec = c.architecture == .sasrec
        for s in split.train {
            for t in c.windows.ends(count: s.count, maxLength: c.maxLength, minimumEnd: sasrec ? 2 : 1) {
                let len = sasrec ? min(t - 1, c.maxLength) : min(t, c.maxLength)
                examples += 1
                rows += Double(len)
                attention += Double(len * len)
                if c.architecture == .sasrec { scored += Double(c.windows.scoredRows(targets: len, maxLength: c.maxLength) ?? len) }
                else {
                    let p = Double(c.maskProbability)
                    // expected masked positions, plus the forced mask when none was drawn
                    scored += Double(len) * p + pow1m(p, len)
                }
            }
        }
        let blocks = Double(c.blocks)
        var flops = 6 * scored * n * d
        flops += blocks * rows * 3 * (8 * d * d + 4 * d * f)
        flops += blocks * attention * 12 * d
        if let t = textDimension, c.items.usesText {
            let steps = Double((examples + c.batchSize - 1) / c.batchSize)
            flops += steps * 4 * n * Double(t) * d
        }
        return flops
    }

    private static func pow1m(_ p: Double, _ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= 1 - p }
        return r
    }
}
