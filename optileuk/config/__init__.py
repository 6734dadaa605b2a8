"""Study files and search-space files: loading and validation (all errors at once)."""

from optileuk.config._study import Budget, PrunerConfig, RunnerConfig, Study, load_study, study_from_dict

__all__ = ["Budget", "PrunerConfig", "RunnerConfig", "Study", "load_study", "study_from_dict"]
