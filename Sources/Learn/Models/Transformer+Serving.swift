import Foundation

/// One block's weights transposed to `[in, out]`, for serving.
final class ServingBlockWeights {
    let qkv: Buffer, out: Buffer, ff1: Buffer, ff2: Buffer

    init(_ block: SequenceNetwork.Block) {
        func transposed(_ p: Parameter) -> Buffer {
            let rows = p.shape[0], columns = p.shape[1]  // stored [out, in]
            let buffer = Buffer(rows * columns)
            for o in 0..<rows {
                for i in 0..<columns { buffer.p[i * rows + o] = p.value.p[o * columns + i] }
            }
            return buffer
        }
        qkv = transposed(block.qkvWeight)
        out = transposed(block.outWeight)
        ff1 = transposed(block.ff1Weight)
        ff2 = transposed(block.ff2Weight)
    }
}

extension SequenceNetwork {
    /// Prepares the network for serving: keeps a transposed copy of every block weight so that inference on a
    /// few rows (one user's history) multiplies without transposing, and skips the query projection of all but
    /// the last row in the last block. Only for networks that no longer train: the next `zeroGradients()` (every
    /// training step) drops the copies. Results equal the training-path forward up to float rounding.
    func freezeForServing() {
        servingWeights = blocks.map(ServingBlockWeights.init)
    }
}
