"""One top-level handler: the project's errors and the common OS errors become one clear message
and a non-zero exit; `--debug` (or SCREGNET_DEBUG=1) shows the traceback instead."""

from __future__ import annotations

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

    from scregnet.errors import ScregnetError

    if isinstance(exc, ScregnetError):
        return str(exc), 1
    if isinstance(exc, ValidationError):
        return f"invalid configuration:\n{exc}", 2
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
