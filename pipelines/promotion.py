"""Promotion by hand, keeping the MLflow aliases and the ZenML Model stages in agreement."""

from __future__ import annotations

from scregnet import registry
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


def manual_promote(name: str, version: str) -> None:
    c = tracker().client
    mv = c.get_model_version(name, version)  # raises if the version does not exist
    decision = registry.Decision(name, str(mv.version), True, "promoted by hand", "manual", float("nan"))
    registry.apply_promotion(decision, zenml_stage_mirror(name, str(mv.version)))
    c.set_model_version_tag(name, str(mv.version), "promotion_decision", "promoted by hand")


def manual_rollback(name: str) -> str:
    previous = registry.rollback(name)
    zenml_stage_mirror(name, previous)(True)
    return previous
