"""Offline checks of the local image scripts (infra/images/); building and running the image
is done by hand (infra/images/build_local.sh, smoke_local.sh), never in CI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

from test_infra import _dockerfile_instructions

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "infra" / "images"


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for kw, arg in _dockerfile_instructions():
        if kw == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((kw, arg))
    return stages


def test_offline_pip_settings_reach_every_pip_install_and_not_the_runtime_image():
    stages = _stages()
    builder = next(s for s in stages if s[0][1].endswith(" AS builder"))
    runtime = stages[-1]
    for name in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        # Declared without a default: unset (pip's own default) in a normal docker build.
        declared = [i for i, (kw, arg) in enumerate(builder) if kw == "ARG" and arg == name]
        assert declared, f"builder stage: ARG {name} missing"
        installs = [i for i, (kw, arg) in enumerate(builder) if kw == "RUN" and "pip install" in arg]
        assert installs and declared[0] < installs[0], f"ARG {name} must precede the first pip install"
        assert not any(kw in ("ARG", "ENV") and name in arg for kw, arg in runtime), f"{name} leaks into the image"


def test_build_script_mounts_the_wheelhouse_where_pip_looks():
    script = (IMAGES / "build_local.sh").read_text()
    find_links = re.search(r"--build-arg PIP_FIND_LINKS=(\S+)", script)
    assert find_links and "--build-arg PIP_NO_INDEX=1" in script
    assert re.search(rf'--volume "\$WHEELS:{re.escape(find_links.group(1))}:ro"', script), script
    # SHELL (bash -o pipefail) survives only in the docker image format.
    assert "--format docker" in script and "--isolation chroot" in script


def _run_script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(IMAGES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_build_script_refuses_an_unknown_variant_and_a_cache_inside_the_repository():
    result = _run_script("build_local.sh", "gpu")
    assert result.returncode == 1 and "variant must be 'cpu' or 'cuda', got 'gpu'" in result.stderr
    result = _run_script("build_local.sh", "cpu", SCREGNET_IMAGE_CACHE=str(ROOT / "image-cache"))
    assert result.returncode == 1 and "must be outside the repository" in result.stderr
    assert not (ROOT / "image-cache").exists()


def _step_pod_module():
    spec = importlib.util.spec_from_file_location("k8s_step_pod", IMAGES / "k8s_step_pod.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(steps: list[tuple[str, bool, list[str]]]) -> SimpleNamespace:
    return SimpleNamespace(
        id="snap",
        step_configurations={
            name: SimpleNamespace(config=SimpleNamespace(enable_cache=cache), spec=SimpleNamespace(upstream_steps=up))
            for name, cache, up in steps
        },
    )


def test_step_pods_are_uncached_steps_whose_inputs_come_from_the_same_run():
    pick = _step_pod_module()._pick_steps
    training = _snapshot(
        [
            ("ingest", False, []),
            ("validate", False, ["ingest"]),
            ("embed", True, ["ingest", "validate"]),
            ("train", False, ["ingest", "validate", "embed"]),
        ]
    )
    assert pick(training, 2) == ["ingest", "validate"]
    # train needs embed, a cacheable step that would not run in the replayed run.
    assert pick(training, 5) == ["ingest", "validate"]
    cached_root = _snapshot([("load", True, []), ("check", False, ["load"]), ("side", False, [])])
    assert pick(cached_root, 2) == ["side"]
    try:
        pick(_snapshot([("load", True, [])]), 2)
    except SystemExit as exc:
        assert "caching disabled" in str(exc)
    else:
        raise AssertionError("a snapshot without uncached steps must be refused")
