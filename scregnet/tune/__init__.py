"""Optuna hyperparameter search over the reference search space, on validation only.

One study = one dataset + one split (protocol, seed) + one embedding. Every trial trains with
`fit` on the training part and is scored on the validation part; `fit`'s `on_eval` hook reports
each intermediate validation value to Optuna so the pruner (median or Hyperband) can stop bad
trials early. The objective receives the split WITHOUT its test part: test labels are not even
in memory during the search. After the search a final model is retrained with the best
parameters (selected on validation again) and evaluated once on test, beside the trivial baselines.

The study lives in an Optuna RDB storage (sqlite at $SCREGNET_HOME/optuna.db by default, or a
database URL): `load_if_exists=True` + "n_trials is the study's target" means a killed study
resumes where it stopped, and several workers can tune one study in parallel.

Tracking: a parent MLflow run per study (its id is kept in the study's user attributes, so a
resumed study or a second worker logs under the same parent); each trial is a nested run
(`mlflow.parentRunId` tag) with its parameters, intermediate curve, final value and state.

Modules: `space` (search space -> config), `study` (storage, study, objective, trial runs),
`retrain` (search + the final retrain, `TuneResult`), `report` (tuned vs default, tables).
"""

from scregnet.tune.report import tuned_vs_default, tuning_markdown
from scregnet.tune.retrain import TuneResult, best_params_artifact, retrain_and_evaluate, tune
from scregnet.tune.space import apply_params, config_overrides, suggest, trial_config
from scregnet.tune.study import (
    TrialTracker,
    create_study,
    default_storage,
    default_study_name,
    make_objective,
    redact,
    resolve_storage,
    run_study,
    state_counts,
    study_tags,
    without_test,
)

__all__ = [
    "TrialTracker",
    "TuneResult",
    "apply_params",
    "best_params_artifact",
    "config_overrides",
    "create_study",
    "default_storage",
    "default_study_name",
    "make_objective",
    "redact",
    "resolve_storage",
    "retrain_and_evaluate",
    "run_study",
    "state_counts",
    "study_tags",
    "suggest",
    "trial_config",
    "tune",
    "tuned_vs_default",
    "tuning_markdown",
    "without_test",
]
