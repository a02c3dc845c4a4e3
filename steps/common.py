"""Helpers shared by the steps."""

from __future__ import annotations

from typing import Any

from zenml import get_step_context, log_metadata


def record(metadata: dict[str, Any]) -> None:
    """Attach metadata to the running step; a no-op when called outside a pipeline (`.entrypoint`)."""
    try:
        get_step_context()
    except RuntimeError:
        return
    log_metadata(metadata)
