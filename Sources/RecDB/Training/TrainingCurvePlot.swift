import Foundation

/// A training curve as a self-contained SVG: mean training loss (top panel) and validation NDCG@10
/// (bottom panel) per validation, the validation whose weights were kept marked. No fonts, scripts or external
/// references, so the file opens anywhere and can be embedded in a page as it is.
public enum TrainingCurvePlot {
    /// - Parameters:
    ///   - curve: `TrainingReport.curve` rows: [epoch, mean train loss, valid NDCG@10, valid Recall@10, steps?].
    ///   - title: shown above the panels (escaped).
    /// - Returns: nil when the curve has no complete row (a version trained before curves were stored).
    public static func svg(curve: [[Double]], title: String) -> String? {
        let rows = curve.filter { $0.count >= 4 && $0[0...3].allSatisfy(\.isFinite) }
        guard !rows.isEmpty else { return nil }
        // With validation every N steps, several rows share an epoch: plot against steps then.
        let epochs = rows.map { $0[0] }
        let bySteps = Set(epochs).count < rows.count && rows.allSatisfy { $0.count >= 5 && $0[4].isFinite }
        let xs = rows.map { bySteps ? $0[4] : $0[0] }
        let losses = rows.map { $0[1] }, ndcgs = rows.map { $0[2] }
        // Early stopping keeps the first validation that beat every earlier one, i.e. the first maximum
        // (`max(by:)` keeps the earliest of equal elements).
        let best = ndcgs.indices.max { ndcgs[$0] < ndcgs[$1] }!

        let width = 720.0, panelHeight = 150.0, left = 70.0, right = 20.0, top = 40.0, gap = 40.0
        let height = top + 2 * panelHeight + gap + 40
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(fmt(left))" y="20" font-size="14">\(escape(title))</text>

            """
        func panel(_ ys: [Double], label: String, color: String, originY: Double) {
            let (xLow, xHigh) = span(xs), (yLow, yHigh) = span(ys)
            let plotWidth = width - left - right
            func px(_ x: Double) -> Double { left + (x - xLow) / (xHigh - xLow) * plotWidth }
            func py(_ y: Double) -> Double { originY + panelHeight - (y - yLow) / (yHigh - yLow) * panelHeight }
            svg += """
                <rect x="\(fmt(left))" y="\(fmt(originY))" width="\(fmt(plotWidth))" height="\(fmt(panelHeight))" fill="none" stroke="#999"/>
                <text x="\(fmt(left - 6))" y="\(fmt(originY + 10))" text-anchor="end">\(fmt(yHigh, digits: 4))</text>
                <text x="\(fmt(left - 6))" y="\(fmt(originY + panelHeight))" text-anchor="end">\(fmt(yLow, digits: 4))</text>
                <text x="\(fmt(left + 6))" y="\(fmt(originY + 14))" fill="\(color)">\(escape(label))</text>
                <polyline fill="none" stroke="\(color)" stroke-width="2" points="\(zip(xs, ys).map { "\(fmt(px($0))),\(fmt(py($1)))" }.joined(separator: " "))"/>
                <circle cx="\(fmt(px(xs[best])))" cy="\(fmt(py(ys[best])))" r="4" fill="\(color)"><title>kept: \(fmt(ys[best], digits: 4))</title></circle>

                """
        }
        panel(losses, label: "mean training loss", color: "#1f77b4", originY: top)
        panel(ndcgs, label: "validation NDCG@10 (dot: kept weights)", color: "#d62728", originY: top + panelHeight + gap)
        let (xLow, xHigh) = span(xs)
        let axisY = top + 2 * panelHeight + gap
        svg += """
            <text x="\(fmt(left))" y="\(fmt(axisY + 16))">\(fmt(xLow, digits: 0))</text>
            <text x="\(fmt(width - right))" y="\(fmt(axisY + 16))" text-anchor="end">\(fmt(xHigh, digits: 0))</text>
            <text x="\(fmt(left + (width - left - right) / 2))" y="\(fmt(axisY + 32))" text-anchor="middle">\(bySteps ? "optimiser steps" : "epoch")</text>
            </svg>

            """
        return svg
    }

    /// The plotted range of values; a flat series gets a unit-free margin so it draws mid-panel.
    static func span(_ values: [Double]) -> (Double, Double) {
        let low = values.min()!, high = values.max()!
        if high > low { return (low, high) }
        let margin = Swift.max(abs(low) * 0.05, 1e-6)
        return (low - margin, high + margin)
    }

    static func fmt(_ x: Double, digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
