"""Model registry: every trained model becomes a version of `scregnet-<dataset>`.

Aliases: `challenger` = the newest version; `champion` moves to it only when it passes the
promotion gate (`scregnet.promotion`): better than the current champion on pairs neither model
trained or selected on, and better than every no-learning baseline with bootstrap confidence.
The decision and its numbers are stored as version tags, the champion history as a
registered-model tag so `rollback` can step back, and each outcome in the audit log.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scregnet.serialize import ModelBundle
from scregnet.tracking import as_tracker, with_retries

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
MAX_TAG = 5000  # MLflow's limit on a tag value


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
    tags: dict[str, str] = field(default_factory=dict)  # every number of the gate (promotion.GateDecision)
    numbers: dict[str, float] = field(default_factory=dict)  # the gate's numbers, for the audit log

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
    bundle: ModelBundle,
    split,
    registry_cfg,
    tracking=None,
    extra_tags: dict | None = None,
) -> Decision:
    """New version + `challenger` alias, then the promotion gate (`scregnet.promotion`).

    `champion` moves to the new version only if (1) it beats the current champion on the fair set
    (the new test pairs neither model trained or selected a checkpoint on) and (2) it beats every
    no-learning baseline on its own test pairs with the paired bootstrap lower bound above the margin.
    Every number goes into the version's tags; the caller applies the decision (`apply_promotion`).
    """
    import mlflow

    from scregnet.metrics import evaluate_scores

    t = as_tracker(tracking).activate()
    c = t.client
    test_scores = bundle.score_indices(split.test)
    metrics = evaluate_scores(split.test, test_scores)
    tags = {
        "run_id": run_id,
        "split_hash": split.hash(),
        **{f"test_{k}": repr(float(metrics[k])) for k in ("auroc", "auprc", "per_tf_auroc", "per_tf_auprc")},
        **(extra_tags or {}),
    }
    mv = with_retries(lambda: mlflow.register_model(model_uri, name, tags=tags), "register the model")
    version = str(mv.version)
    with_retries(lambda: c.set_registered_model_alias(name, CHALLENGER, version), "set the challenger alias")
    champion = current_champion(name, t)
    gate = _gate(bundle, split, test_scores, registry_cfg, champion, t)
    metric = registry_cfg.promotion_metric
    decision = Decision(
        name,
        version,
        gate.promoted,
        gate.reason,
        metric,
        float(metrics[metric]),
        str(champion.version) if champion is not None else None,
        gate.champion.champion_value if champion is not None else None,
        gate.tags(),
        _numbers(gate),
    )
    return _record(c, decision)  # the caller applies it: see `apply_promotion`


def register_and_gate(
    run_id: str,
    model_uri: str,
    bundle: ModelBundle,
    split,
    registry_cfg,
    tracking=None,
    mirror=None,
    actor: str | None = None,
    extra_tags: dict | None = None,
) -> Decision:
    """Register the logged model (`log_model`'s URI) as a version, run the gate, move `champion` if it
    passed (then `mirror`, e.g. the ZenML stage), and append the outcome to the champion audit log."""
    from scregnet import audit

    t = as_tracker(tracking)
    name = model_name(registry_cfg.model_prefix, bundle.meta["dataset"])
    decision = register(run_id, model_uri, name, bundle, split, registry_cfg, t, extra_tags)
    apply_promotion(decision, mirror, t)
    champion_before = decision.champion_version  # the champion the gate compared with
    audit.record_event(
        name,
        "promoted" if decision.promoted else "kept",
        decision.version,
        champion_before,
        decision.version if decision.promoted else champion_before,
        decision.reason,
        decision.numbers,
        actor=actor,
        tracking=t,
    )
    return decision


def _numbers(gate) -> dict[str, float]:
    """The gate's numbers as floats: fair-set values and sizes, per-TF AUROC difference intervals."""
    c, b = gate.champion, gate.baselines
    out = {"fair_challenger": c.challenger_value, "fair_champion": c.champion_value}
    out.update({f"fair_{k}": float(v) for k, v in c.fair.items()})
    intervals = {"champion": c.per_tf} if c.per_tf is not None else {}
    intervals.update({f"vs_{name}": iv for name, iv in b.intervals.items()})
    for name, iv in intervals.items():
        out.update({f"{name}_per_tf_auroc_diff": iv.mean, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi})
    return out


def _gate(bundle: ModelBundle, split, test_scores, registry_cfg, champion, tracking):
    """The promotion gate for a challenger `bundle` against `champion` (a model version or None)."""
    from scregnet import promotion
    from scregnet.baselines import BASELINES, baseline_scores

    n = len(bundle.genes)
    baselines = {b: baseline_scores(b, split.train, split.test, n) for b in BASELINES}
    if champion is None:
        return promotion.gate(registry_cfg, split.test, test_scores, baselines)
    with tempfile.TemporaryDirectory() as tmp:
        champ = load_bundle(champion.name, str(champion.version), tmp, tracking)
    challenger_seen = promotion.SeenPairs.from_split(split, bundle.genes)
    if champ.seen is not None:
        champion_seen = promotion.SeenPairs(champ.genes, champ.seen)
    elif _version_tag(champion, "split_hash") == split.hash() and champ.genes == bundle.genes:
        champion_seen = challenger_seen  # the same split: it trained and selected on the same pairs
    else:
        why = "the champion was registered without its training pairs; promote by hand to replace it"
        return promotion.gate(registry_cfg, split.test, test_scores, baselines, champion_unknown=why)
    fair = promotion.fair_evaluation_set(split.test, bundle.genes, [challenger_seen, champion_seen])
    challenger_fair = bundle.score_indices(fair.pairs) if fair.n_pairs else np.zeros(0)
    champion_fair = (
        champ.score_indices(promotion.to_model_indices(fair.pairs, bundle.genes, champ.genes))
        if fair.n_pairs
        else np.zeros(0)
    )
    return promotion.gate(registry_cfg, split.test, test_scores, baselines, fair, challenger_fair, champion_fair)


def tag_version(c, name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags on a model version (values cut to MLflow's limit), with retries."""
    for k, v in tags.items():
        with_retries(lambda k=k, v=v: c.set_model_version_tag(name, version, k, v[:MAX_TAG]), f"tag version {version}")


def _record(c, decision: Decision) -> Decision:
    tags = decision.tags or {
        "promotion_decision": "promoted" if decision.promoted else "rejected",
        "promotion_reason": decision.reason,
    }
    tag_version(c, decision.name, decision.version, tags)
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
        tag_version(c, name, demoted, tags)
    except Exception as exc:  # a deleted version has no tags to correct
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")) + str(exc):
            raise
    return previous
