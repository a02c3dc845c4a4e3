"""All local state under $SCREGNET_HOME (default ./.scregnet); nothing in the user's home.

`configure()` must run before ZenML or MLflow are imported: both read their locations
from the environment at import time.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path


def home() -> Path:
    """$SCREGNET_HOME (default ./.scregnet), resolved."""
    return Path(os.environ.get("SCREGNET_HOME", ".scregnet")).expanduser().resolve()


def mlflow_db() -> Path:
    """The local MLflow sqlite database."""
    return home() / "mlflow.db"


def default_tracking_uri() -> str:
    """sqlite URI of the local MLflow database."""
    return f"sqlite:///{mlflow_db()}"


def configure(tracking_uri: str | None = None) -> Path:
    """Point ZenML, MLflow, Great Expectations and Optuna at $SCREGNET_HOME; returns it."""
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    env = os.environ
    env.setdefault("ZENML_CONFIG_PATH", str(root / "zenml"))
    env.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    env.setdefault("ZENML_ENABLE_REPO_INIT_WARNINGS", "false")
    env.setdefault("ZENML_LOGGING_VERBOSITY", "INFO")  # step start/finish lines are the progress display
    env.setdefault("AUTO_OPEN_DASHBOARD", "false")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    # Third-party tqdm bars (GX draws one per expectation) flood step logs; our own progress is logging.
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri or default_tracking_uri())
    env.setdefault("MPLCONFIGDIR", str(root / "matplotlib"))
    # Local artifacts (MLflow) live beside the database.
    env.setdefault("SCREGNET_ARTIFACTS", str(root / "mlartifacts"))
    if not interactive():
        plain_output()
    return root


def interactive() -> bool:
    """Both stdout and stderr are terminals (not redirected to a file or a pipe)."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """`text` without ANSI colour and style codes."""
    return _ANSI.sub("", text)


def plain_output() -> None:
    """No colour codes in redirected logs: ZenML's log colours off (read when ZenML is imported),
    `NO_COLOR` for tools that honour it, and warnings (MLflow colours some) printed without codes."""
    os.environ.setdefault("ZENML_LOGGING_COLORS_DISABLED", "true")
    os.environ.setdefault("NO_COLOR", "1")
    if getattr(warnings.formatwarning, "_scregnet_plain", False):
        return
    original = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        return strip_ansi(original(message, category, filename, lineno, line))

    formatwarning._scregnet_plain = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning
