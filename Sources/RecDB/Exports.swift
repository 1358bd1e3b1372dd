import Index
import Learn

// The Learn and Index types that appear in RecDB's public API, under RecDB's name, so an app (and
// rdbctl) only imports RecDB.

/// Hyperparameters of a sequential recommender (see Learn's `ModelConfiguration`; defaults = the
/// reference configuration in `schemas/model-configuration.schema.json`).
public typealias ModelConfiguration = Learn.ModelConfiguration
public typealias DistillationConfiguration = Learn.DistillationConfiguration
public typealias RankingMetrics = Learn.RankingMetrics
public typealias EvaluationOptions = Learn.EvaluationOptions
public typealias TrainingWindows = Learn.TrainingWindows
public typealias EpochProgress = Learn.EpochProgress
public typealias TrainingReport = Learn.TrainingReport
public typealias PCA = Learn.PCA
/// Search-time knobs of a vector index (`efSearch`, `nprobe`).
public typealias SearchParameters = Index.SearchParameters
