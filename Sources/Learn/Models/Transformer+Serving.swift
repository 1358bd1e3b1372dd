import Foundation

/// One block's weights transposed to `[in, out]`, for serving.
final class ServingBlockWeights {
    let qkv: Buffer, out: Buffer, ff1: Buffer, ff2: Buffer

    init(_ block: TransformerEncoder.Block) {
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
