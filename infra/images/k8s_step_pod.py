"""Replay pipeline steps the way ZenML 0.98's Kubernetes orchestrator pod launches them.

Used by infra/images/smoke_local.sh inside the image (mounted read-only, not part of it),
against the local ZenML store that `scregnet demo` has just filled:

  prepare  does, for the demo run's snapshot, what the orchestrator pod does before it
           creates the step Jobs (kubernetes_orchestrator_entrypoint.main): a placeholder
           pipeline run under a new orchestrator run id, the shared environment
           (get_config_environment_vars + ZENML_KUBERNETES_RUN_ID), and per step the
           runtime environment, the command (StepEntrypointConfiguration.get_entrypoint_command)
           and the arguments (get_entrypoint_arguments). It writes them as JSON; the smoke
           script starts each step as its own process in the image with exactly that
           command, arguments and environment, as the step pod's container would run.
  check    asserts that those steps ran (status completed, not cached) in that run.

The steps are picked from the snapshot, not named here: in pipeline order, steps with
caching disabled whose upstream steps are all picked too (the orchestrator launches a pod
for those unconditionally; a cacheable step would be served from the demo run's cache).

Differences from a pod in a cluster: the store is the local SQLite store in the volume,
not a ZenML server (no API token in the environment); the Kubernetes orchestrator of the
stack is registered with `local=True` (ZenML refuses a remote orchestrator on a local
store), so, as ZenML does for such pods, the environment also carries
ZENML_LOCAL_STORES_PATH (the local artifact store, shared through the volume instead of a
hostPath mount); no cluster is ever contacted; the snapshot was compiled by `scregnet
demo` for the default local stack, so configs/k8s.yaml's pod settings play no part.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

STACK = "scregnet-smoke-k8s"


def _ensure_k8s_stack(client):
    """A stack whose orchestrator is ZenML's Kubernetes orchestrator (idempotent)."""
    from zenml.enums import StackComponentType

    components = {
        StackComponentType.ORCHESTRATOR: (
            "kubernetes",
            {"kubernetes_context": "smoke", "kubernetes_namespace": "scregnet", "local": True},
        ),
        StackComponentType.CONTAINER_REGISTRY: ("default", {"uri": "localhost"}),
        StackComponentType.IMAGE_BUILDER: ("local", {}),
    }
    for kind, (flavor, configuration) in components.items():
        if not client.list_stack_components(name=STACK, type=kind).items:
            client.create_stack_component(name=STACK, flavor=flavor, component_type=kind, configuration=configuration)
    if not client.list_stacks(name=STACK).items:
        artifact_store = client.active_stack_model.components[StackComponentType.ARTIFACT_STORE][0]
        client.create_stack(
            name=STACK,
            components={**{kind: STACK for kind in components}, StackComponentType.ARTIFACT_STORE: artifact_store.id},
        )
    return client.get_stack(STACK)


def _pick_steps(snapshot, count: int) -> list[str]:
    picked: list[str] = []
    for name, step in snapshot.step_configurations.items():
        if len(picked) == count:
            break
        if step.config.enable_cache is False and set(step.spec.upstream_steps) <= set(picked):
            picked.append(name)
    if not picked:
        raise SystemExit(f"no step of snapshot {snapshot.id} has caching disabled and no cacheable upstream step")
    return picked


def prepare(out: Path, count: int) -> None:
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.constants import ENV_ZENML_LOCAL_STORES_PATH
    from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
    from zenml.enums import ExecutionStatus
    from zenml.integrations.kubernetes.constants import ENV_ZENML_KUBERNETES_RUN_ID
    from zenml.orchestrators.utils import get_config_environment_vars
    from zenml.pipelines.run_utils import create_placeholder_run
    from zenml.utils import env_utils

    client = Client()
    runs = client.list_pipeline_runs(sort_by="desc:created", size=1)
    if not runs.items:
        raise SystemExit("no pipeline run in the store: run `scregnet demo` first")
    demo_run = runs.items[0]
    if demo_run.status != ExecutionStatus.COMPLETED:
        raise SystemExit(f"the latest run {demo_run.name} is {demo_run.status}, not completed")
    snapshot = demo_run.snapshot
    steps = _pick_steps(snapshot, count)

    previous = client.active_stack_model.id
    stack = _ensure_k8s_stack(client)
    client.activate_stack(stack.id)  # the orchestrator pod's active stack
    try:
        active_stack = client.active_stack
        # The orchestrator pod's own name is the run's orchestrator run id.
        orchestrator_run_id = f"scregnet-smoke-orchestrator-{uuid.uuid4().hex[:8]}"
        run = create_placeholder_run(snapshot=snapshot, orchestrator_run_id=orchestrator_run_id)
        shared_env, secrets = get_config_environment_vars()
        shared_env[ENV_ZENML_KUBERNETES_RUN_ID] = orchestrator_run_id
        if active_stack.orchestrator.config.is_local:
            # What build_pod_manifest(mount_local_stores=True) adds besides the hostPath mount
            # (here the volume already holds the path): the local artifact store's location.
            shared_env[ENV_ZENML_LOCAL_STORES_PATH] = GlobalConfiguration().local_stores_path
        command = StepEntrypointConfiguration.get_entrypoint_command()
        pods = []
        for step_name in steps:
            env = shared_env.copy()
            env.update(
                env_utils.get_runtime_environment(
                    config=snapshot.step_configurations[step_name].config, stack=active_stack
                )
            )
            env.update(secrets)  # pass_zenml_token_as_secret=False, the default
            args = StepEntrypointConfiguration.get_entrypoint_arguments(step_name=step_name, snapshot_id=snapshot.id)
            pods.append({"step": step_name, "command": command, "args": args, "env": env})
    finally:
        client.activate_stack(previous)
    out.write_text(
        json.dumps(
            {
                "snapshot_id": str(snapshot.id),
                "replayed_run": demo_run.name,
                "run_id": str(run.id),
                "run_name": run.name,
                "orchestrator_run_id": orchestrator_run_id,
                "stack": STACK,
                "pods": pods,
            },
            indent=1,
        )
    )
    print(f"run {run.name} (snapshot {snapshot.id} of {demo_run.name}): step pods {', '.join(steps)}")


def check(pods_file: Path) -> None:
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    spec = json.loads(pods_file.read_text())
    run = Client().get_pipeline_run(spec["run_id"])
    failures = []
    for pod in spec["pods"]:
        step = run.steps.get(pod["step"])
        if step is None:
            failures.append(f"{pod['step']}: no step run in {run.name}")
            continue
        outputs = {name: [a.uri for a in versions] for name, versions in step.outputs.items()}
        print(f"{pod['step']}: {step.status.value}, outputs {sorted(outputs)} (orchestrator {run.orchestrator_run_id})")
        if step.status != ExecutionStatus.COMPLETED:
            failures.append(f"{pod['step']}: status {step.status.value}, expected completed (executed, not cached)")
    if failures:
        raise SystemExit("step pods failed:\n" + "\n".join(failures))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2, help="how many steps to launch as pods")
    c = sub.add_parser("check")
    c.add_argument("--pods", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.out, args.steps)
    else:
        check(args.pods)


if __name__ == "__main__":
    main(sys.argv[1:])
