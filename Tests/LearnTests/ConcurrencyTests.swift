import Foundation
import Synchronization
import XCTest
@testable import Learn

/// Training and serving at the same time in one process: the training run's thread count is its own (no shared
/// setting a serving thread could see or race on), and neither side changes the other's results. Run under
/// ThreadSanitizer by `make test-tsan`.
final class ConcurrencyTests: XCTestCase {
    /// Opt into the process-wide OpenBLAS set-up the library never does itself (see `LearnEngine`).
    override class func setUp() { super.setUp(); LearnEngine.configureProcess() }

    func testTrainingOnOneThreadWhileServingOnAnother() throws {
        let data = try syntheticDataset(users: 80)
        let trainConfiguration = {
            var c = smallConfiguration(.sasrec)
            c.maxEpochs = 2
            c.threads = 1  // differs from the default split the serving thread uses
            return c
        }()
        let alone = try Trainer.train(dataset: data, configuration: trainConfiguration).model.exportParameters()

        var serveConfiguration = smallConfiguration(.sasrec)
        serveConfiguration.maxEpochs = 1
        serveConfiguration.seed = 7
        let server = try Trainer.train(dataset: data, configuration: serveConfiguration).model
        let histories = data.sequences.prefix(24).map { Array($0.prefix(9)) }
        let expected = histories.map { server.userRepresentation($0) }
        let defaultParts = Parallel.parts
        XCTAssertEqual(defaultParts, max(1, ProcessInfo.processInfo.activeProcessorCount), "no binding outside a call")

        let trained = Locked<[String: Tensor]?>(nil)
        let finished = Atomic<Bool>(false)
        let trainer = Thread {
            let parameters = try? Trainer.train(dataset: data, configuration: trainConfiguration).model.exportParameters()
            trained.withLock { $0 = parameters }
            finished.store(true, ordering: .releasing)
        }
        trainer.start()
        var rounds = 0, mismatches = 0, partsSeen = Set<Int>()
        repeat {
            for (history, vector) in zip(histories, expected) where server.userRepresentation(history) != vector {
                mismatches += 1
            }
            partsSeen.insert(Parallel.parts)
            rounds += 1
        } while !finished.load(ordering: .acquiring)

        XCTAssertGreaterThan(rounds, 0)
        XCTAssertEqual(mismatches, 0, "serving during training changed a user vector")
        XCTAssertEqual(partsSeen, [defaultParts], "the serving thread saw the training run's thread count")
        XCTAssertEqual(Parallel.parts, defaultParts, "training left its thread count behind")
        let parameters = try XCTUnwrap(trained.withLock { $0 }, "training on the other thread failed")
        XCTAssertEqual(parameters.count, alone.count)
        for (name, tensor) in alone {
            XCTAssertEqual(parameters[name], tensor, "\(name): training next to a serving thread is not bit-identical")
        }
    }
}
