import Foundation
import XCTest
@testable import RecDB

/// The training curve stored with every version: its SVG rendering and how `rdbctl` shows it.
final class TrainingCurveTests: DatabaseTestCase {
    func testSVGPlacesEveryValidationAndMarksTheKeptOne() throws {
        // [epoch, loss, valid NDCG@10, valid Recall@10, steps]; the second validation is the best.
        let curve: [[Double]] = [[1, 2.0, 0.1, 0.2, 10], [2, 1.0, 0.3, 0.4, 20], [3, 0.5, 0.2, 0.3, 30]]
        let svg = try XCTUnwrap(TrainingCurvePlot.svg(curve: curve, title: "m v1 <a&b>"))
        // x: epochs 1...3 over [70, 700]; loss panel y over [40, 190] (2.0 at the top), NDCG panel over [230, 380].
        XCTAssertTrue(svg.contains(#"points="70.0,40.0 385.0,140.0 700.0,190.0""#), svg)
        XCTAssertTrue(svg.contains(#"points="70.0,380.0 385.0,230.0 700.0,305.0""#), svg)
        XCTAssertTrue(svg.contains(#"<circle cx="385.0" cy="230.0""#), "the kept (best) validation is marked")
        XCTAssertTrue(svg.contains("m v1 &lt;a&amp;b&gt;"), "the title is escaped")
        XCTAssertTrue(svg.contains(">epoch<"))
        XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
    }

    func testValidationEveryNStepsIsPlottedAgainstSteps() throws {
        let curve: [[Double]] = [[1, 3.0, 0.1, 0.2, 50], [1, 2.0, 0.2, 0.3, 100], [2, 1.0, 0.2, 0.3, 150]]
        let svg = try XCTUnwrap(TrainingCurvePlot.svg(curve: curve, title: "t"))
        XCTAssertTrue(svg.contains(">optimiser steps<"))
        XCTAssertTrue(svg.contains(#"<circle cx="385.0" cy="230.0""#), "ties keep the first maximum, as early stopping does")
        XCTAssertNil(TrainingCurvePlot.svg(curve: [], title: "t"), "no curve, no plot")
        XCTAssertNil(TrainingCurvePlot.svg(curve: [[1, .nan, 0.1, 0.2]], title: "t"), "non-finite rows are not drawn")
    }

    func testTrainPlotAndModelsShowPrintTheStoredCurve() throws {
        guard let rdbctl = builtProduct("rdbctl") else { throw XCTSkip("rdbctl is not built") }
        _ = try makeDatabase()
        var csv = "user,item,timestamp\n"
        for u in 0..<40 { for t in 0..<12 { csv += "u\(u),i\((u + t) % 30),\(t)\n" } }
        let events = try writeFile("events.csv", csv)
        let db = path("db")
        XCTAssertEqual(try runProcess(rdbctl, ["import", "interactions", db, events, "--json"]).0, 0)
        let plot = path("curve.svg")
        let (status, _, err) = try runProcess(rdbctl, ["train", db, "--model", "m", "--epochs", "3", "--patience", "5",
                                                       "--hidden", "16", "--blocks", "1", "--plot", plot, "--json"])
        XCTAssertEqual(status, 0, err)
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2, "a loss and a validation line")

        let (showStatus, shown, showErr) = try runProcess(rdbctl, ["models", "show", db, "m"])
        XCTAssertEqual(showStatus, 0, showErr)
        XCTAssertTrue(shown.hasPrefix("m v1 (active)"), shown)
        let info = try Database(path: db).read { try $0.modelVersion("m") }
        XCTAssertEqual(info.report.curve.count, 3)
        // Each stored curve row is printed with its numbers.
        for row in info.report.curve {
            let line = String(format: "%5.0f  %7.0f  %10.4f  %13.4f  %15.4f", row[0], row[4], row[1], row[2], row[3])
            XCTAssertTrue(shown.contains(line), "missing curve row \(line) in\n\(shown)")
        }
        let (jsonStatus, json, _) = try runProcess(rdbctl, ["models", "show", db, "m", "1", "--json"])
        XCTAssertEqual(jsonStatus, 0)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(((object["report"] as? [String: Any])?["curve"] as? [[Double]])?.count, 3)

        let (missing, _, missingErr) = try runProcess(rdbctl, ["models", "show", db, "m", "7"])
        XCTAssertEqual(missing, 1)
        XCTAssertTrue(missingErr.contains("m version 7"), missingErr)
        let (badPlot, _, badPlotErr) = try runProcess(rdbctl, ["train", db, "--model", "m", "--plot", path("no/such/dir/c.svg")])
        XCTAssertNotEqual(badPlot, 0)
        XCTAssertTrue(badPlotErr.contains("is not a writable folder"), badPlotErr)
        XCTAssertEqual(try Database(path: db).models().first?.versions.count, 1, "a refused --plot trains nothing")
    }
}
