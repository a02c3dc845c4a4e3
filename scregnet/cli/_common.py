"""What the commands share: clear failures, the run config with command-line overrides, choice
lists and defaults read from `RunConfig` (so they live in one place), and hints that name this
environment's own executables."""

from __future__ import annotations

import shlex
import sys
import types
import typing
from pathlib import Path
from typing import Any, NoReturn

import click


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` in red on stderr and exit with `code` (1: the work failed, 2: bad usage)."""
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _literal_args(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _literal_args(arg)
            if found:
                return found
    return []


def choices(section: type, field: str) -> click.Choice:
    """A click.Choice of the `Literal` values of `section.field` (e.g. `SplitConfig`, "protocol")."""
    values = _literal_args(section.model_fields[field].annotation)
    if not values:
        raise TypeError(f"{section.__name__}.{field} is not a Literal field")
    return click.Choice(values)


def default(section: type, field: str) -> Any:
    """The default of `section.field` as `RunConfig` defines it."""
    info = section.model_fields[field]
    return info.default_factory() if info.default_factory is not None else info.default


def with_default(text: str, section: type, field: str) -> str:
    """Help text ending in the config default, e.g. `... [default: genelink]`."""
    return f"{text} [default: {default(section, field)}]"


def overrides(**kw: Any) -> dict[str, Any]:
    """Dotted-key overrides without the options left unset (None or empty)."""
    return {k: v for k, v in kw.items() if v is not None and v != ()}


def load(config_file: Path | None, **dotted: Any):
    """The run config from `config_file` (or defaults) with `dotted` overrides; bad values exit 2."""
    from scregnet.config import load_config

    try:
        return load_config(config_file, overrides(**dotted))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), 2)


def command_line() -> str:
    """This invocation as a shell command (written at the top of result tables)."""
    return "scregnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def executable(name: str) -> str:
    """`name` from this environment's bin directory when it is there (works without an activated venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


MLFLOW_UI_PORT = 5000


def mlflow_ui_hint(config=None) -> str:
    """How to open the MLflow UI on the runs' store, and the link to the model-vs-baselines view.

    A local (sqlite) store: the `mlflow ui` command with this environment's own executable; a
    tracking server: its URL.
    """
    from scregnet.tracking import records, tracker

    t = tracker(config)
    try:
        exp_id = t.experiment_id()
    except Exception:  # a hint must not fail the command that prints it
        exp_id = None
    if t.uri.startswith("sqlite:"):
        base = f"http://127.0.0.1:{MLFLOW_UI_PORT}"
        command = f"{executable('mlflow')} ui --backend-store-uri {t.uri} --port {MLFLOW_UI_PORT} --workers 1"
    else:
        base = command = t.uri
    link = records.view_url(base, exp_id) if exp_id else base
    return f"{command}\n  model vs baselines: {link}"


def write_text(path: Path, text: str) -> Path:
    """Write an output file, creating its folder; a clear error when the path cannot be a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def prior_options(command):
    """The options that say how to read the priors and the genes (train, validate)."""
    from scregnet.config import DataConfig

    options = [
        click.option(
            "--priors",
            multiple=True,
            type=click.Path(path_type=Path),
            help="Prior file(s): tf,target CSV/TSV, GMT library or ChIP-Atlas table, optionally .gz (repeatable).",
        ),
        click.option(
            "--prior-format",
            type=choices(DataConfig, "prior_format"),
            default=None,
            help=with_default("Format of the prior files (auto: from suffix and content).", DataConfig, "prior_format"),
        ),
        click.option("--tf", default=None, help="TF of a ChIP-Atlas table whose header and file name do not say."),
        click.option("--min-score", type=float, default=None, help="Keep prior pairs scoring at least this."),
        click.option(
            "--gene-symbols",
            default=None,
            metavar="COLUMN",
            help="var column holding gene symbols when var_names are Ensembl IDs (default: found by name).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
