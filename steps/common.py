"""Helpers shared by the steps."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from zenml import get_step_context, log_metadata

from scregnet.resources import Measured

log = logging.getLogger(__name__)


def record(metadata: dict[str, Any]) -> None:
    """Attach metadata to the running step; a no-op when called outside a pipeline (`.entrypoint`)."""
    try:
        get_step_context()
    except RuntimeError:
        return
    log_metadata(metadata)


def pipeline_run_name() -> str:
    """Name of the running pipeline run ("standalone" outside a pipeline, e.g. `.entrypoint` tests)."""
    try:
        return get_step_context().pipeline_run.name
    except Exception:
        return "standalone"


@contextmanager
def measured(step: str) -> Iterator[Measured]:
    """Wall time and peak RSS of the step's body, logged at INFO and kept as step metadata."""
    with Measured() as m:
        yield m
    log.info("%s: %.1fs, peak RSS %.0f MiB", step, m.seconds, m.peak_rss_mib)
    record(m.as_dict())
