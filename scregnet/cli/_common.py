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


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (comparisons with nan are always false)."""

    def convert(self, value, param, ctx):
        """The number, or a usage error naming the option."""
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number

    def _describe_range(self) -> str:
        # click writes an unbounded range as "x<=None" in --help.
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


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


def check_out(path: Path | None, option: str = "--out") -> None:
    """Exit 2 now, before any work, when `path` cannot be written as a file (a directory, or below a file)."""
    import os

    if path is None:
        return
    if path.is_dir():
        fail(f"{option} {path}: is a directory; give a file name", 2)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"{option} {path}: {parent} is a file, not a directory", 2)
            if not os.access(parent, os.W_OK | os.X_OK):
                fail(f"{option} {path}: cannot create files in {parent} (permission denied)", 2)
            return


def write_text(path: Path, text: str) -> Path:
    """Write an output file, creating its folder; a clear error when the path cannot be a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_option(
    help: str = "Run config YAML (configs/local.yaml, configs/k8s.yaml, ...).", envvar: str | None = None
):
    """`--config PATH` (passed as `config_file`): a run config that must exist."""
    if envvar:
        help += f" [env {envvar}]"
    path = click.Path(exists=True, path_type=Path)
    return click.option("--config", "config_file", envvar=envvar, type=path, default=None, help=help)


def data_option(help: str = "BEELINE-layout dataset directory.", multiple: bool = False):
    """`--data DIR`; with `multiple`, repeatable and required (a tuple of paths)."""
    return click.option(
        "--data", "data", multiple=multiple, required=multiple, type=click.Path(path_type=Path), help=help
    )


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
        click.option("--min-score", type=FiniteRange(), default=None, help="Keep prior pairs scoring at least this."),
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


def _n_top_genes(value: str | None):
    if value is None or value == "all":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a number of genes or 'all'") from None
    if n < 0:
        raise click.BadParameter(f"{value!r}: expected a number >= 0 or 'all'")
    return n


# The preprocess section's options: (flag, keyword of the command, field of PreprocessConfig,
# help, click type; None: the field's Literal choices).
_PREPROCESS_OPTIONS = (
    (
        "--preprocess",
        "preprocess_mode",
        "mode",
        "auto: .h5ad inputs are preprocessed, BEELINE directories pass through.",
        None,
    ),
    ("--input", "input_kind", "input", "What X holds (auto: integer stored values = raw counts).", None),
    (
        "--n-top-genes",
        "n_top_genes",
        "n_top_genes",
        "Highly variable genes kept beside the expressed prior TFs, or 'all'.",
        str,
    ),
    (
        "--min-genes-per-cell",
        "min_genes_per_cell",
        "min_genes_per_cell",
        "QC: cells expressing fewer genes are dropped.",
        click.IntRange(min=0),
    ),
    (
        "--min-cells-per-gene",
        "min_cells_per_gene",
        "min_cells_per_gene",
        "QC: genes expressed in fewer cells are dropped.",
        click.IntRange(min=0),
    ),
    (
        "--max-pct-mt",
        "max_pct_mt",
        "max_pct_mt",
        "QC: cells with more than this % of counts in MT-/mt- genes are dropped.",
        click.FloatRange(0, 100, min_open=True),
    ),
    ("--hvg-flavor", "hvg_flavor", "hvg_flavor", "sc.pp.highly_variable_genes flavor.", None),
    (
        "--cell-features",
        "cell_features",
        "cell_features",
        "GNN node features: each gene over the cells, or over metacells.",
        None,
    ),
    (
        "--n-metacells",
        "n_metacells",
        "n_metacells",
        "Metacells (k-means on the cell PCA) when node features use them.",
        click.IntRange(min=2),
    ),
)


def preprocess_options(command):
    """Options of the scanpy preprocessing of a lab's AnnData (the config's `preprocess` section)."""
    from scregnet.config import PreprocessConfig as P

    for flag, dest, field, text, kind in reversed(_PREPROCESS_OPTIONS):
        extra = {"callback": lambda _c, _p, v: _n_top_genes(v)} if field == "n_top_genes" else {}
        help_text = with_default(text, P, field) if default(P, field) is not None else text + " [default: off]"
        command = click.option(flag, dest, type=kind or choices(P, field), default=None, help=help_text, **extra)(
            command
        )
    return command


def preprocess_overrides(kw: dict) -> dict:
    """Dotted config keys of the preprocess options (pops them from the command's kwargs)."""
    return {f"preprocess.{field}": kw.pop(dest) for _, dest, field, _, _ in _PREPROCESS_OPTIONS if dest in kw}
