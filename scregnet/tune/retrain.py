"""Search, then retrain once with the best parameters and evaluate once on test."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.splits import Split
from scregnet.tracking import records, tracker
from scregnet.train import ModelInputs, fit
from scregnet.tune.space import apply_params, config_overrides
from scregnet.tune.study import redact, resolve_storage, run_study, state_counts


@dataclass
class TuneResult:
    """A finished study: best parameters and value, counts, times, and the final model's metrics."""

    study_name: str
    storage: str
    best_params: dict[str, Any]
    best_value: float
    metric: str
    overrides: dict[str, Any]
    counts: dict[str, int]
    seconds: float
    study_seconds: float = 0.0
    parent_run_id: str | None = None
    final_run_id: str | None = None
    final: dict[str, Any] = field(default_factory=dict)  # val/test metrics of the retrained model + baselines

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (the storage URL with its password redacted)."""
        return {
            "study_name": self.study_name,
            "storage": redact(self.storage),
            "metric": self.metric,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "config_overrides": self.overrides,
            "trials": self.counts,
            "seconds": self.seconds,
            "study_seconds": self.study_seconds,
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_final_run_id": self.final_run_id,
            "final": self.final,
        }


def best_params_artifact(result: TuneResult, directory: Path) -> Path:
    """Write `best_params.json` (the result as JSON) into `directory`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "best_params.json"
    path.write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return path


def tune(
    dataset: GRNDataset,
    config: RunConfig,
    embedding: GeneEmbedding | None = None,
    *,
    storage: str | None = "default",
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    retrain: bool | None = None,
    out_dir: Path | None = None,
) -> TuneResult:
    """Search, save the best params (JSON artifact), then retrain with them and evaluate once on test.

    The final model is logged as an ordinary training run (`records`: the tags, metric names and
    plots of the train and evaluate steps, plus `tuned=true`), so `scregnet compare` lists it.
    The study's parent run, when this call created it, ends FINISHED, FAILED or KILLED.
    """
    t0 = time.perf_counter()
    inputs = ModelInputs.build(dataset, embedding)
    study, split = run_study(
        dataset,
        config,
        embedding,
        inputs=inputs,
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        track=track,
        parent_run_id=parent_run_id,
    )
    parent = study.user_attrs.get("mlflow_parent_run_id") if track else None
    owned = parent if parent_run_id is None else None  # the parent run this call closes
    mlflow = tracker(config)
    with mlflow.holding(owned) if owned else nullcontext():
        result = _result(study, config, storage, time.perf_counter() - t0, parent)
        if retrain if retrain is not None else config.tune.retrain:
            from scregnet.peers import PeerScores

            peers = PeerScores.of(dataset, config.peers, embedding)
            result.final, result.final_run_id = retrain_and_evaluate(
                dataset, inputs, split, config, result.best_params, track, parent, peers
            )
        result.seconds = time.perf_counter() - t0
        path = best_params_artifact(result, Path(out_dir or _default_out(study.study_name)))
        if track and parent:
            _log_study(mlflow, parent, result, config, path)
            if owned:
                mlflow.end_run(parent, "FINISHED")
    return result


def _default_out(study_name: str) -> Path:
    from scregnet.home import home

    return home() / "tune" / study_name


def _result(study, config: RunConfig, storage: str | None, study_seconds: float, parent: str | None) -> TuneResult:
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        raise RuntimeError(f"study {study.study_name}: no trial completed ({state_counts(study)}); nothing to retrain")
    best = study.best_trial
    url = resolve_storage(config) if storage == "default" else (storage or "in-memory")
    return TuneResult(
        study.study_name,
        url,
        dict(best.params),
        float(best.value),
        config.tune.metric,
        config_overrides(best.params, config),
        state_counts(study),
        0.0,
        study_seconds=study_seconds,
        parent_run_id=parent,
    )


def _log_study(mlflow, parent: str, result: TuneResult, config: RunConfig, path: Path) -> None:
    """The best params file and the study's summary metrics on its parent run."""
    final = result.final
    with_final = records.flat_metrics(final["model"], final["baselines"], final.get("peers")) if final else {}
    mlflow.log_artifacts(parent, path.parent, "tuning")
    mlflow.log_metrics(
        parent,
        {
            f"best_val_{config.tune.metric}": result.best_value,
            **{f"n_trials_{k.lower()}": v for k, v in result.counts.items()},
            **{f"final_{k}": v for k, v in with_final.items()},
        },
    )


def retrain_and_evaluate(
    dataset: GRNDataset,
    inputs: ModelInputs,
    split: Split,
    config: RunConfig,
    params: dict,
    track: bool = True,
    parent_run_id: str | None = None,
    peers=None,
):
    """Retrain with `params` (full epoch budget, selection on validation) and evaluate once on test
    (beside the baselines and, given a PeerScores, the peers).

    Returns (final metrics dict, MLflow run id or None). The run is recorded like a pipeline run.
    """
    from scregnet.experiment import evaluate
    from scregnet.train import bundle

    cfg = apply_params(config, params)
    mlflow = tracker(cfg) if track else None
    extra = {"tuned": "true", "kind": "train"} | ({"tune_parent_run_id": parent_run_id} if parent_run_id else {})
    run_id = (
        records.start_training_run(
            mlflow, cfg, dataset, split, records.run_label(cfg, dataset.name, split, "tuned"), **extra
        )
        if track
        else None
    )
    with mlflow.holding(run_id) if run_id else nullcontext():
        res = fit(inputs, split, cfg.model, cfg.train)
        model = bundle(res, inputs, cfg.model, dataset=dataset.name, split_sha256=split.hash())
        ev = evaluate(model, split, peers, cfg.registry.bootstrap())
        if run_id:
            records.log_training(mlflow, run_id, res, split, inputs, cfg.train.select_metric)
            title = f"{dataset.name} ({split.protocol}, seed {split.seed}, tuned)"
            records.log_evaluation(mlflow, run_id, ev, model.genes, title)
            mlflow.end_run(run_id, "FINISHED")
    final = {
        "model": ev.model,
        "baselines": ev.baselines,
        "peers": ev.peers,
        "best_epoch": res.best_epoch,
        "train_seconds": res.seconds,
    }
    return final, run_id
