"""One top-level handler: the project's errors and the common OS errors become one clear message
and a non-zero exit; `--debug` (or SCREGNET_DEBUG=1) shows the traceback instead."""

from __future__ import annotations

import copy
import logging
import os
import sys

import click

DEBUG_HINT = "(run with --debug, or SCREGNET_DEBUG=1, for the Python traceback)"


def debug_enabled() -> bool:
    """Whether tracebacks should be shown (`--debug` or SCREGNET_DEBUG set to a true value)."""
    return os.environ.get("SCREGNET_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception that reached the command line."""
    from pydantic import ValidationError

    from scregnet.config import describe_validation_error
    from scregnet.errors import ConfigError, ScregnetError

    if isinstance(exc, ConfigError):
        return str(exc), 2
    if isinstance(exc, ScregnetError):
        return str(exc), 1
    if isinstance(exc, ValidationError):  # a config section built outside load_config
        lines = describe_validation_error(exc, _model_of(exc))
        return "invalid configuration:\n" + "\n".join(f"  - {line}" for line in lines), 2
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {what}", 1
    if isinstance(exc, (ValueError, KeyError, OSError, RuntimeError)):
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return text or type(exc).__name__, 1
    mlflow_message = getattr(exc, "message", None)
    if type(exc).__name__ == "MlflowException" and mlflow_message:
        return f"MLflow: {mlflow_message}", 1
    return f"unexpected error: {type(exc).__name__}: {exc}", 1


def _model_of(exc) -> type | None:
    """The config class a pydantic ValidationError came from (its `title`), or None (RunConfig)."""
    from scregnet import config

    model = getattr(config, str(getattr(exc, "title", "")), None)
    return model if isinstance(model, type) else None


class ScregnetGroup(click.Group):
    """A click group whose commands end in one clear line, never a traceback, on errors."""

    def invoke(self, ctx: click.Context):
        """Run the command; project and OS errors become one red line and a non-zero exit."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.secho("interrupted", fg="red", err=True)
            sys.exit(130)
        except Exception as exc:  # the one place that turns errors into messages
            if debug_enabled():
                raise
            message, code = describe(exc)
            click.secho(message, fg="red", err=True)
            click.echo(DEBUG_HINT, err=True)
            sys.exit(code)


STEP_TRACEBACK_HINT = "(traceback: rerun with --debug, or see the step's logs)"
# Libraries that log a traceback beside a message of their own: ZenML's local orchestrator
# (`Step X failed.`) and Optuna (`Trial N failed ... because of the following error: ...`).
QUIET_LOGGERS = ("zenml", "optuna")


class _WithoutTraceback(logging.Formatter):
    """Wraps a console handler's formatter: records of `QUIET_LOGGERS` that carry a traceback are shown
    without it (the message names the error); ZenML's stored step logs keep it."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """The record as the library formats it, without the traceback unless debugging."""
        if record.exc_info and record.name.split(".")[0] in QUIET_LOGGERS and not debug_enabled():
            record = copy.copy(record)  # the other handlers (ZenML's log storage) get the original
            record.exc_info, record.exc_text = None, None
            hint = STEP_TRACEBACK_HINT if record.name.startswith("zenml") else "(traceback: rerun with --debug)"
            record.msg = f"{record.msg} {hint}"
        return self.inner.format(record)


def hide_library_tracebacks() -> None:
    """Keep ZenML's step tracebacks and Optuna's failed-trial tracebacks off the console (unless
    --debug / SCREGNET_DEBUG): the user reads the error's own message, then the command's summary."""
    import optuna  # noqa: F401  (creates Optuna's console handler)

    for name in ("", "optuna"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter))
