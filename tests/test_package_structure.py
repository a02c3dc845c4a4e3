"""The package's layering, enforced (as scanpy's tests/test_package_structure.py enforces its own).

cli -> pipelines -> steps -> (materializers, scregnet core); nothing imports back up, and the core
(`scregnet/` outside `scregnet/cli/`) never touches the orchestration layer, so it imports and
runs without ZenML or click.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORCHESTRATION = {"zenml", "click", "steps", "pipelines", "materializers"}


def _imported_top_levels(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, function-local imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _offenders(folder: str, forbidden: set[str], skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    out = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(skip):
            continue
        bad = sorted(_imported_top_levels(path) & forbidden)
        if bad:
            out[rel] = bad
    return out


def test_the_core_never_imports_the_orchestration_layer():
    assert _offenders("scregnet", ORCHESTRATION, skip=("scregnet/cli/",)) == {}


def test_steps_and_materializers_do_not_import_upward():
    assert _offenders("steps", {"pipelines"}) == {}
    assert _offenders("materializers", {"steps", "pipelines"}) == {}


def test_every_core_module_imports_with_the_orchestration_layer_absent():
    """In a fresh interpreter where importing zenml, steps, pipelines or materializers fails.

    (click stays importable here: MLflow itself depends on it; the static test above keeps the
    core's own code free of click.)
    """
    script = f"""
import importlib, pkgutil, sys
BLOCKED = {sorted(ORCHESTRATION - {"click"})!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Block())
import scregnet
failed = []
for mod in pkgutil.walk_packages(scregnet.__path__, "scregnet."):
    if mod.name == "scregnet.cli" or mod.name.startswith("scregnet.cli."):
        continue
    try:
        importlib.import_module(mod.name)
    except Exception as exc:
        failed.append(f"{{mod.name}}: {{type(exc).__name__}}: {{exc}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]


def test_the_command_line_is_split_by_area_and_every_command_has_one_home():
    from scregnet.cli import data, main, registry, research, run, ui, watch

    areas = {"run": run, "data": data, "registry": registry, "research": research, "watch": watch, "ui": ui}
    homes = {c.name: area for area, module in areas.items() for c in module.COMMANDS}
    assert set(homes) == set(main.commands), "a command is registered outside the area modules"
    assert homes["train"] == "run" and homes["embed"] == "data" and homes["predict"] == "registry"
    assert homes["tune"] == "research" and homes["watch"] == "watch" and homes["dashboard"] == "ui"


def test_choice_lists_come_from_the_config_types():
    from scregnet.cli import main
    from scregnet.config import EmbedderKind, GnnKind, Protocol

    train = {p.name: p for p in main.commands["train"].params}
    assert list(train["protocol"].type.choices) == list(typing.get_args(Protocol))
    assert list(train["gnn"].type.choices) == list(typing.get_args(GnnKind))
    assert list(train["embedder"].type.choices) == list(typing.get_args(EmbedderKind))
    # No default of its own: an unset option leaves the config file's value (or RunConfig's) in place.
    assert train["protocol"].default is None and train["gnn"].default is None


def test_no_core_module_is_named_like_a_top_level_package():
    """A `scregnet/cli/pipelines.py` would not break absolute imports, but it would mislead a reader."""
    names = {p.stem for p in (REPO / "scregnet").rglob("*.py")}
    assert not names & {"pipelines", "steps", "materializers"}
