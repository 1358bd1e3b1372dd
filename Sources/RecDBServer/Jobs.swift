import Foundation
import RecDB

/// A background training run started by `POST /v1/train`, as `GET /v1/jobs/{id}` reports it.
struct JobStatus: Codable, Sendable {
    enum State: String, Codable, Sendable { case running, succeeded, failed, cancelled }
    struct Progress: Codable, Sendable {
        var epoch: Int
        var maxEpochs: Int
        var loss: Double
        var validNDCG10: Double
        var validRecall10: Double
        var bestEpoch: Int
        enum CodingKeys: String, CodingKey {
            case epoch, loss
            case maxEpochs = "max_epochs", validNDCG10 = "valid_ndcg10", validRecall10 = "valid_recall10", bestEpoch = "best_epoch"
        }
    }
    /// Progress of an import: rows read so far, bytes of the uploaded file consumed.
    struct ImportProgress: Codable, Sendable {
        var rows: Int
        var bytesDone: Int
        var bytesTotal: Int
        enum CodingKeys: String, CodingKey { case rows, bytesDone = "bytes_done", bytesTotal = "bytes_total" }
    }
    var id: Int
    /// `train` or `import`.
    var kind = "train"
    /// The model a training job trains (nil for imports).
    var model: String?
    /// What an import job imports: interactions, items or users (nil for training).
    var imports: String?
    var state: State
    var startedAt: Double
    var finishedAt: Double?
    var progress: Progress?
    /// Per validation: [epoch, loss, valid NDCG@10, valid Recall@10] so far (the dashboard draws it live).
    var curve: [[Double]] = []
    var result: TrainingOutcome?
    var importProgress: ImportProgress?
    /// An import's summary, as `rdbctl import --json` prints it.
    var importResult: ImportSummary?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case id, kind, model, imports, state, progress, curve, result, error
        case startedAt = "started_at", finishedAt = "finished_at", importProgress = "import_progress", importResult = "import_result"
    }
}

/// The background jobs of this server process: trainings and imports. One of each kind runs at a time
/// (training uses every core; an import holds the single writer for its whole transaction); a second
/// request of a kind while one runs is refused with 409.
final class TrainingJobs: @unchecked Sendable {  // all state behind `lock`
    private let lock = NSLock()
    private var jobs: [Int: JobStatus] = [:]
    private var cancelled: Set<Int> = []
    private var nextID = 1
    /// Finished jobs kept for `GET /v1/jobs`; the oldest are forgotten beyond this.
    static let retained = 100

    /// Starts `request` on its own thread; nil when a training is already running.
    func start(_ request: TrainingRequest, database: Database, databasePath: String) -> Int? {
        lock.lock()
        if jobs.values.contains(where: { $0.state == .running && $0.kind == "train" }) { lock.unlock(); return nil }
        let id = nextID
        nextID += 1
        jobs[id] = JobStatus(id: id, model: request.model, state: .running, startedAt: Date().timeIntervalSince1970)
        for old in jobs.keys.sorted().dropLast(Self.retained) { jobs[old] = nil }
        lock.unlock()

        var request = request
        let maxEpochs = request.configuration.maxEpochs
        request.progress = { [weak self] p in
            self?.update(id) { job in
                job.progress = .init(epoch: p.epoch, maxEpochs: maxEpochs, loss: p.loss, validNDCG10: p.valid.ndcg10,
                                     validRecall10: p.valid.recall10, bestEpoch: p.bestEpoch)
                job.curve.append([Double(p.epoch), p.loss, p.valid.ndcg10, p.valid.recall10])
            }
        }
        request.shouldStop = { [weak self] in self?.isCancelled(id) ?? true }
        let handOver = RequestHandOver(request: request)
        // A thread of its own: training runs for minutes and must not hold a Swift-concurrency worker.
        let thread = Thread { [weak self] in
            do {
                let outcome = try database.train(handOver.request)
                let wasCancelled = self?.isCancelled(id) == true
                self?.update(id) { job in
                    job.state = wasCancelled ? .cancelled : .succeeded
                    job.result = outcome
                    job.finishedAt = Date().timeIntervalSince1970
                }
            } catch let error as RecDBError {
                self?.update(id) { job in
                    job.state = .failed
                    job.error = Problem.scrub(error.description, path: databasePath)
                    job.finishedAt = Date().timeIntervalSince1970
                }
            } catch {
                self?.update(id) { job in
                    job.state = .failed
                    job.error = "\(error)"
                    job.finishedAt = Date().timeIntervalSince1970
                }
            }
        }
        thread.name = "recdb-train-\(id)"
        thread.start()
        return id
    }

    /// Starts an import of `file` (an uploaded body; `cleanup` removes it once the import ends) on its own
    /// thread; nil when an import is already running. `scrub` turns messages into ones without server paths.
    func startImport(kind: String, _ run: @escaping @Sendable (@escaping ImportProgressHandler) throws -> ImportSummary,
                     cleanup: @escaping @Sendable () -> Void, scrub: @escaping @Sendable (String) -> String) -> Int? {
        lock.lock()
        if jobs.values.contains(where: { $0.state == .running && $0.kind == "import" }) { lock.unlock(); return nil }
        let id = nextID
        nextID += 1
        jobs[id] = JobStatus(id: id, kind: "import", model: nil, imports: kind, state: .running, startedAt: Date().timeIntervalSince1970)
        for old in jobs.keys.sorted().dropLast(Self.retained) { jobs[old] = nil }
        lock.unlock()

        let thread = Thread { [weak self] in
            defer { cleanup() }
            do {
                var summary = try run { p in
                    self?.update(id) { $0.importProgress = .init(rows: p.rows, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal) }
                }
                summary.file = "request body"
                self?.update(id) { job in
                    job.state = .succeeded
                    job.importResult = summary
                    job.finishedAt = Date().timeIntervalSince1970
                }
            } catch {
                let message = scrub((error as? RecDBError)?.description ?? "\(error)")
                self?.update(id) { job in
                    job.state = .failed
                    job.error = message
                    job.finishedAt = Date().timeIntervalSince1970
                }
            }
        }
        thread.name = "recdb-import-\(id)"
        thread.start()
        return id
    }

    func status(_ id: Int) -> JobStatus? { lock.lock(); defer { lock.unlock() }; return jobs[id] }

    func all() -> [JobStatus] { lock.lock(); defer { lock.unlock() }; return jobs.values.sorted { $0.id > $1.id } }

    /// Asks a running training to stop; it keeps its best weights so far and is stored as a version.
    /// (An import is one transaction: it cannot stop half-way, so it is not cancellable.)
    func cancel(_ id: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard jobs[id]?.state == .running, jobs[id]?.kind == "train" else { return false }
        cancelled.insert(id)
        return true
    }

    /// Waits for every running job (server shutdown, tests).
    func waitForAll(timeout: TimeInterval = 3600) {
        let deadline = Date().addingTimeInterval(timeout)
        while all().contains(where: { $0.state == .running }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }

    private func isCancelled(_ id: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return cancelled.contains(id) }

    private func update(_ id: Int, _ body: (inout JobStatus) -> Void) {
        lock.lock(); defer { lock.unlock() }
        if var job = jobs[id] { body(&job); jobs[id] = job }
    }
}

/// Moves a training request (whose callbacks are not `Sendable`) to the one thread that runs it.
private final class RequestHandOver: @unchecked Sendable {  // written once here, then read only by the training thread
    let request: TrainingRequest
    init(request: TrainingRequest) { self.request = request }
}
