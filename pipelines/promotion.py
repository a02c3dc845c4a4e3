"""Promotion by hand, keeping the MLflow aliases and the ZenML Model stages in agreement."""

from __future__ import annotations

from scregnet import audit, registry
from scregnet.tracking import tracker


def zenml_stage_mirror(name: str, mlflow_version: str):
    """A mirror for `registry.apply_promotion`: sets the matching ZenML model version's stage."""

    def mirror(promoted: bool) -> None:
        from zenml.client import Client

        mv = tracker().client.get_model_version(name, mlflow_version)
        zenml_version = (mv.tags or {}).get("zenml_model_version")
        if not zenml_version:
            return  # registered outside a ZenML run: nothing to mirror
        Client().get_model_version(name, zenml_version).set_stage("production" if promoted else "staging", force=True)

    return mirror


def manual_promote(name: str, version: str, reason: str = "") -> None:
    """`scregnet promote`: make `version` champion whatever the gate said, and record that it was forced."""
    c = tracker().client
    mv = c.get_model_version(name, version)  # raises if the version does not exist
    before = registry.current_champion(name)
    actor = audit.who()
    why = f"forced by {actor}" + (f": {reason}" if reason else "") + f" (the gate said: {_gate_said(mv)})"
    decision = registry.Decision(name, str(mv.version), True, why, "manual", float("nan"))
    registry.apply_promotion(decision, zenml_stage_mirror(name, str(mv.version)))
    registry.tag_version(c, name, str(mv.version), {"promotion_decision": "forced", "promotion_reason": why})
    audit.record_event(
        name, "forced", str(mv.version), str(before.version) if before else None, str(mv.version), why, actor=actor
    )


def _gate_said(mv) -> str:
    tags = mv.tags or {}
    return tags.get("promotion_reason") or tags.get("promotion_decision") or "nothing recorded"


def manual_rollback(name: str) -> str:
    """`scregnet rollback`: champion back to the previous champion, recorded in the audit log."""
    before = registry.current_champion(name)
    previous = registry.rollback(name)
    zenml_stage_mirror(name, previous)(True)
    audit.record_event(
        name,
        "rolled_back",
        previous,
        str(before.version) if before else None,
        previous,
        f"rolled back from version {before.version if before else '?'} by {audit.who()}",
    )
    return previous
