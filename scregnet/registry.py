"""Model registry: every trained model becomes a version of `scregnet-<dataset>`.

Aliases: `challenger` = the newest version; `champion` moves to it only when it beats the
current champion on the same evaluation split by more than `promotion_margin` (or when no
champion exists). The decision and its numbers are stored as version tags, and the
champion history as a registered-model tag so `rollback` can step back.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scregnet.serialize import ModelBundle
from scregnet.tracking import as_tracker, with_retries

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"


def model_name(prefix: str, dataset: str) -> str:
    """`hESC/TFs500` -> `scregnet-hESC-TFs500` (registry names avoid slashes)."""
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', dataset).strip('-')}"


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{p}=={version(p).split('+')[0]}"
        for p in ("torch", "torch-geometric", "safetensors", "numpy", "pandas", "pydantic", "scikit-learn", "mlflow")
    ]


def log_model(run_id: str, bundle: ModelBundle, tracking=None) -> str:
    """Log the bundle as an MLflow pyfunc under the run; returns the model URI."""
    import mlflow

    import scregnet

    t = as_tracker(tracking).activate()  # mlflow.pyfunc.log_model goes through the fluent API
    code = Path(__file__).with_name("pyfunc_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(Path(tmp) / "bundle")

        def _log():
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(code),
                    artifacts={"bundle": str(Path(tmp) / "bundle")},
                    code_paths=[str(Path(scregnet.__file__).parent)],
                    pip_requirements=_pip_requirements(),
                    signature=_signature(),
                    input_example=input_example(bundle),
                )
            return info.model_uri

        uri = with_retries(_log, "log the model")
    # start_run/exit marks the run FINISHED; the pipeline reopens it until registration ends.
    with_retries(lambda: t.client.update_run(run_id, status="RUNNING"), "reopen the run")
    return uri


def _signature():
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"tf": ["TF1"], "target": ["GENE1"]})
    return infer_signature(example, example.assign(score=[0.5]))


def input_example(bundle: ModelBundle):
    """Two (tf, target) pairs of the model's own genes: MLflow stores them with the model and checks
    that the logged model scores them."""
    import pandas as pd

    tfs = [str(t) for t in bundle.meta.get("tfs") or [] if str(t) in bundle.index] or bundle.genes[:1]
    targets = [g for g in bundle.genes if g != tfs[0]][:2] or bundle.genes[:2]
    return pd.DataFrame({"tf": [tfs[0]] * len(targets), "target": targets})


@dataclass
class Decision:
    """A promotion decision and the numbers behind it."""

    name: str
    version: str
    promoted: bool
    reason: str
    metric: str
    challenger_value: float
    champion_version: str | None = None
    champion_value: float | None = None

    def as_dict(self) -> dict:
        """The decision as a JSON-able dict."""
        return asdict(self)


def _version_tag(v, key: str, default=None):
    return (v.tags or {}).get(key, default)


def current_champion(name: str, tracking=None):
    """The version holding `champion`, or None."""
    c = as_tracker(tracking).client
    try:
        return c.get_model_version_by_alias(name, CHAMPION)
    except Exception as exc:  # no alias or no model yet
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower() or "alias" in str(exc).lower():
            return None
        raise


def _champion_value_on(split_test: np.ndarray, genes: list[str], champion, metric: str, tracking) -> float:
    """Score the champion on the challenger's test pairs (by gene symbol) and compute `metric`."""
    from scregnet.metrics import evaluate_scores

    with tempfile.TemporaryDirectory() as tmp:
        champ = load_bundle(champion.name, str(champion.version), tmp, tracking)
    tfs = [genes[i] for i in split_test[:, 0]]
    targets = [genes[i] for i in split_test[:, 1]]
    return float(evaluate_scores(split_test, champ.score_symbols(tfs, targets))[metric])


def load_bundle(name: str, version: str, dst: str, tracking=None) -> ModelBundle:
    """Download a registered version and read its bundle (checksums verified)."""
    import mlflow

    as_tracker(tracking).activate()
    local = with_retries(
        lambda: mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=dst),
        f"download {name} version {version}",
    )
    return ModelBundle.load(Path(local) / "artifacts" / "bundle")


def register(
    run_id: str,
    model_uri: str,
    name: str,
    metrics: dict[str, float],
    split_hash: str,
    metric: str = "auprc",
    margin: float = 0.0,
    split_test: np.ndarray | None = None,
    genes: list[str] | None = None,
    tracking=None,
    extra_tags: dict | None = None,
) -> Decision:
    """New version + `challenger` alias; `champion` moves only if the gate passes."""
    import mlflow

    t = as_tracker(tracking).activate()
    c = t.client
    tags = {
        "run_id": run_id,
        "split_hash": split_hash,
        **{f"test_{k}": repr(float(v)) for k, v in metrics.items()},
        **(extra_tags or {}),
    }
    mv = with_retries(lambda: mlflow.register_model(model_uri, name, tags=tags), "register the model")
    version = str(mv.version)
    with_retries(lambda: c.set_registered_model_alias(name, CHALLENGER, version), "set the challenger alias")

    value = float(repr(float(metrics[metric])))  # exactly what the tag stores
    champion = current_champion(name, t)
    if champion is None:
        decision = Decision(name, version, True, "no champion yet", metric, value)
    else:
        if _version_tag(champion, "split_hash") == split_hash:
            champ_value = float(_version_tag(champion, f"test_{metric}"))
            basis = "same split"
        elif split_test is not None and genes is not None:
            try:
                champ_value = _champion_value_on(split_test, genes, champion, metric, t)
                basis = "champion re-scored on the challenger's test split"
            except KeyError as exc:
                return _record(
                    c,
                    Decision(
                        name,
                        version,
                        False,
                        f"champion cannot score this gene set ({exc})",
                        metric,
                        value,
                        str(champion.version),
                    ),
                )
        else:
            return _record(
                c,
                Decision(
                    name,
                    version,
                    False,
                    "champion evaluated on another split; not comparable",
                    metric,
                    value,
                    str(champion.version),
                ),
            )
        better = value > champ_value + margin
        reason = (
            f"{metric} {value:.4f} {'>' if better else '<='} champion {champ_value:.4f} + margin {margin} ({basis})"
        )
        decision = Decision(name, version, better, reason, metric, value, str(champion.version), champ_value)
    return _record(c, decision)  # the caller applies it: see `apply_promotion`


def _record(c, decision: Decision) -> Decision:
    for k, v in {
        "promotion_decision": "promoted" if decision.promoted else "rejected",
        "promotion_reason": decision.reason,
    }.items():
        with_retries(lambda k=k, v=v: c.set_model_version_tag(decision.name, decision.version, k, v), "tag the version")
    return decision


def _history(c, name: str) -> list[str]:
    """Champion versions, oldest first, from the registered model's tag."""
    model = with_retries(lambda: c.get_registered_model(name), "read the registered model")
    return [v for v in (model.tags or {}).get(HISTORY_TAG, "").split(",") if v]


def set_champion(name: str, version: str, tracking=None) -> None:
    """Move `champion` to `version` and append it to the champion history."""
    c = as_tracker(tracking).client
    history = _history(c, name)
    if not history or history[-1] != str(version):
        history.append(str(version))
    with_retries(lambda: c.set_registered_model_alias(name, CHAMPION, str(version)), "set the champion alias")
    with_retries(lambda: c.set_registered_model_tag(name, HISTORY_TAG, ",".join(history)), "record champion history")


def apply_promotion(decision: Decision, mirror=None, tracking=None) -> None:
    """Move `champion` to the decided version, then run `mirror` (e.g. the ZenML stage).

    If the mirror fails, the alias goes back where it was, so the two registries never
    disagree and a failed run never leaves `champion` on its model.
    """
    if not decision.promoted:
        if mirror is not None:
            mirror(False)
        return
    previous = current_champion(decision.name, tracking)
    set_champion(decision.name, decision.version, tracking)
    try:
        if mirror is not None:
            mirror(True)
    except BaseException:
        c = as_tracker(tracking).client
        if previous is not None:
            c.set_registered_model_alias(decision.name, CHAMPION, str(previous.version))
        else:
            c.delete_registered_model_alias(decision.name, CHAMPION)
        history = [v for v in _history(c, decision.name) if v != decision.version]
        c.set_registered_model_tag(decision.name, HISTORY_TAG, ",".join(history))
        raise


ROLLED_BACK = "rolled back"


def rollback(name: str, tracking=None) -> str:
    """Champion goes back to the previous champion; returns that version.

    The version that loses `champion` is tagged `promotion_decision: rolled back` (with the reason),
    so no version keeps a promotion tag it no longer holds.
    """
    c = as_tracker(tracking).client
    history = _history(c, name)
    if len(history) < 2:
        raise ValueError(f"{name}: no previous champion to roll back to (history: {history or 'empty'})")
    demoted = history.pop()
    previous = history[-1]
    with_retries(lambda: c.set_registered_model_alias(name, CHAMPION, previous), "set the champion alias")
    with_retries(lambda: c.set_registered_model_tag(name, HISTORY_TAG, ",".join(history)), "record champion history")
    tags = {
        "promotion_decision": ROLLED_BACK,
        "promotion_reason": f"rolled back: champion returned to version {previous}",
    }
    try:
        for k, v in tags.items():
            with_retries(lambda k=k, v=v: c.set_model_version_tag(name, demoted, k, v), "tag the rolled-back version")
    except Exception as exc:  # a deleted version has no tags to correct
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")) + str(exc):
            raise
    return previous
