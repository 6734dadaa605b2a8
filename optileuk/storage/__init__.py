"""Optuna storages as optileuk uses them: opened from URLs, read without loading every trial,
written in batches, and the names optileuk gives its own study and trial attrs.

The only module that holds SQL on Optuna's tables; the runner, cli, report, compare, assess and
predict import from here.
"""

from optileuk.storage._keys import (ANCHOR_ATTR, DEFAULTS_ATTR, FINGERPRINT_KEY, FINISHED, MASKS_ATTR, RACE_ATTR,
                                    RACE_SUFFIX, STALE_KEY, STATE_KEY, STUDY_ATTR, TOLD_KEY)
from optileuk.storage._open import DEFAULT_STORAGE, open_existing, open_storage, redact, study_names
from optileuk.storage._write import TrialWriter
from optileuk.storage._read import (Columns, StudyCounts, best_trials, finished_columns, local_time, nondominated,
                                    pareto_front, rdb_of, read_trials, study_counts, trials_with_attr)

__all__ = ["ANCHOR_ATTR", "Columns", "DEFAULTS_ATTR", "DEFAULT_STORAGE", "FINGERPRINT_KEY", "FINISHED", "MASKS_ATTR",
           "RACE_ATTR", "RACE_SUFFIX", "STALE_KEY", "STATE_KEY", "STUDY_ATTR", "StudyCounts", "TOLD_KEY", "TrialWriter", "best_trials", "finished_columns", "local_time",
           "nondominated", "open_existing", "open_storage", "pareto_front", "rdb_of", "read_trials", "redact",
           "study_counts", "study_names", "trials_with_attr"]
