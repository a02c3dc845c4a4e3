"""Every malformed input in tests/data/bad gets a specific message that names the file,
through the real `scregnet validate` command; the well-formed one passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scregnet.cli import main

DATA = Path(__file__).resolve().parent / "data"
CASES = json.loads((DATA / "cases.json").read_text())


def _args(name: str, case: dict) -> list[str]:
    d = DATA / "bad" / name
    args = ["validate"] + (["--h5ad", str(d / case["h5ad"])] if "h5ad" in case else ["--data", str(d)])
    if "priors" in case:
        args += ["--priors", str(d / case["priors"])]
    return args


def test_good_corpus_dataset_passes():
    result = CliRunner().invoke(main, ["validate", "--data", str(DATA / "good")])
    assert result.exit_code == 0, result.output
    assert "ok: good: 30 cells, 40 genes" in result.output


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_is_named_and_explained(name):
    case = CASES[name]
    result = CliRunner().invoke(main, _args(name, case))
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    if name.endswith("_warn"):
        assert result.exit_code == 0, text
        assert "warning:" in text
    else:
        assert result.exit_code == 1, text
    assert Path(case["file"]).name in text, text
    assert case["expect"] in text, text


def test_validate_command_as_users_run_it():
    exe = [sys.executable, "-m", "scregnet.cli", "validate", "--data"]
    bad = subprocess.run(exe + [str(DATA / "bad" / "nan_value")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "BL--ExpressionData.csv" in bad.stderr
    good = subprocess.run(exe + [str(DATA / "good")], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
