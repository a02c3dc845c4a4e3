"""The pod specs ZenML 0.98's Kubernetes orchestrator really generates for our pipeline.

No cluster: a temporary ZenML store + stack (Kubernetes orchestrator, local artifact store,
container registry, local image builder) and a fake kubeconfig; the only things patched are
methods of the Kubernetes Python client's API classes (`kubernetes.client.BatchV1Api`,
`CoreV1Api`), which record what ZenML sends and answer like an API server would. Anything
else that would reach the network (`ApiClient.call_api`) fails the test.

Two halves of the orchestrator run, in one subprocess (ZenML's global state stays out of
the pytest process):
  1. client side: `pipelines.training.run_training` with configs/k8s.yaml submits the
     orchestrator Job (and, for a cron schedule, a CronJob);
  2. orchestrator pod side: `kubernetes_orchestrator_entrypoint.main()` (what the
     orchestrator Job runs) reads the snapshot and creates one Job per step.

configs/k8s.yaml runs prebuilt images (`skip_build`), so no Docker engine is involved.
Test-mode deviations from a real run, none in the pod settings under test:
  * `synchronous=false` and a short `job_monitoring_interval` (nothing to wait for);
  * the orchestrator component has `local=True` while the client submits: ZenML refuses a
    remote orchestrator on a local (SQLite) store, and there is no ZenML server here. In
    local mode ZenML adds a `local-stores` hostPath volume and REPLACES the pod-level
    securityContext with this machine's uid/gid, so for the client-side objects (the
    orchestrator Job and the CronJob) the pod-level securityContext and that volume are
    not checked. The orchestrator-pod half runs with `local=False`, as in the cluster: the
    step pods are checked in full.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_infra import _strip_none

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "scregnet"
CRON = "0 3 * * 1"

pytestmark = pytest.mark.skipif(
    not (ROOT / "pipelines" / "training.py").exists(), reason="pipelines/training.py not written yet"
)


# --------------------------------------------------------------------------------------
# driver (runs in the subprocess)


def _test_run_config(workdir: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "k8s.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw.pop("parameters")  # passed as the pipeline argument, as run_training does
    k8s = raw["settings"]["orchestrator.kubernetes"]
    k8s["synchronous"] = False
    k8s["job_monitoring_interval"] = 0.05
    k8s["interrupt_check_interval"] = 0.5
    path = workdir / "k8s-test.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _drive(workdir: Path) -> None:  # pragma: no cover - runs in a subprocess
    import threading
    from unittest import mock

    from kubernetes import client as k8s

    captured: dict[str, list[Any]] = {"jobs": [], "cron_jobs": [], "calls": []}
    jobs: dict[str, Any] = {}
    lock = threading.Lock()
    api = k8s.ApiClient()

    def record(kind: str, body: Any) -> dict:
        data = api.sanitize_for_serialization(body)
        with lock:
            captured[kind].append(data)
        return data

    def create_namespaced_job(self, namespace, body, **kwargs):
        assert namespace == NAMESPACE, namespace
        record("jobs", body)
        with lock:
            jobs[body.metadata.name] = body
        return body

    def read_namespaced_job(self, name, namespace, **kwargs):
        with lock:
            job = jobs[name]
        if "step_name" in (job.metadata.labels or {}):
            # Step Jobs finish at once, so the orchestrator moves on to the next steps.
            job.status = k8s.V1JobStatus(conditions=[k8s.V1JobCondition(type="Complete", status="True")])
        else:
            job.status = k8s.V1JobStatus()
        return job

    def patch_namespaced_job(self, name, namespace, body, **kwargs):
        with lock:
            job = jobs[name]
            job.metadata.annotations = {**(job.metadata.annotations or {}), **body["metadata"]["annotations"]}
        return job

    def list_namespaced_job(self, namespace, **kwargs):
        with lock:
            return k8s.V1JobList(items=list(jobs.values()))

    def delete_namespaced_job(self, name, namespace, **kwargs):
        return k8s.V1Status()

    def create_namespaced_cron_job(self, namespace, body, **kwargs):
        assert namespace == NAMESPACE, namespace
        record("cron_jobs", body)
        return body

    def read_namespaced_pod(self, name, namespace, **kwargs):
        # The orchestrator pod reading itself: it belongs to the orchestrator Job.
        orchestrator_job = next(n for n, j in jobs.items() if "step_name" not in (j.metadata.labels or {}))
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels={"job-name": orchestrator_job},
                owner_references=[
                    k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name=orchestrator_job, uid="0000")
                ],
            )
        )

    def list_namespaced_pod(self, namespace, **kwargs):
        return k8s.V1PodList(items=[])

    def no_network(self, *args, **kwargs):
        raise AssertionError(f"unexpected Kubernetes API call: {args[:2]}")

    patches = [
        mock.patch.object(k8s.BatchV1Api, "create_namespaced_job", create_namespaced_job),
        mock.patch.object(k8s.BatchV1Api, "read_namespaced_job", read_namespaced_job),
        mock.patch.object(k8s.BatchV1Api, "patch_namespaced_job", patch_namespaced_job),
        mock.patch.object(k8s.BatchV1Api, "list_namespaced_job", list_namespaced_job),
        mock.patch.object(k8s.BatchV1Api, "delete_namespaced_job", delete_namespaced_job),
        mock.patch.object(k8s.BatchV1Api, "create_namespaced_cron_job", create_namespaced_cron_job),
        mock.patch.object(k8s.CoreV1Api, "read_namespaced_pod", read_namespaced_pod),
        mock.patch.object(k8s.CoreV1Api, "list_namespaced_pod", list_namespaced_pod),
        mock.patch.object(k8s.ApiClient, "call_api", no_network),
    ]
    for p in patches:
        p.start()

    from zenml.client import Client
    from zenml.config.schedule import Schedule
    from zenml.enums import StackComponentType
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(ROOT))
    client = Client()
    client.create_stack_component(
        name="k8s",
        flavor="kubernetes",
        component_type=StackComponentType.ORCHESTRATOR,
        configuration={
            "kubernetes_context": "podspec-test",
            "kubernetes_namespace": NAMESPACE,
            "local": True,
        },
    )
    client.create_stack_component(
        name="registry",
        flavor="default",
        component_type=StackComponentType.CONTAINER_REGISTRY,
        configuration={"uri": "registry.example.com/scregnet"},
    )
    client.create_stack_component(
        name="builder", flavor="local", component_type=StackComponentType.IMAGE_BUILDER, configuration={}
    )
    client.create_stack(
        name="podspec",
        components={
            StackComponentType.ORCHESTRATOR: "k8s",
            StackComponentType.ARTIFACT_STORE: "default",
            StackComponentType.CONTAINER_REGISTRY: "registry",
            StackComponentType.IMAGE_BUILDER: "builder",
        },
    )
    client.activate_stack("podspec")

    from pipelines.training import run_training, training_pipeline
    from scregnet.config import load_config

    config = load_config(ROOT / "configs" / "k8s.yaml")
    run_config = _test_run_config(workdir)

    # 1a. A cron schedule: the client creates a CronJob.
    training_pipeline.with_options(
        config_path=str(run_config), schedule=Schedule(name="podspec-weekly", cron_expression=CRON)
    )(config=config)

    # 1b. A run: the client submits the orchestrator Job.
    run = run_training(config, zenml_config=run_config)
    orchestrator_job = captured["jobs"][-1]
    args = orchestrator_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--snapshot_id", str(run.snapshot.id)], args

    # 2. The orchestrator pod: one Job per step. In the cluster the orchestrator is not in
    # `local` mode (that mode only exists to get past ZenML's remote-server check above, and
    # would replace the pod securityContext with this machine's uid and mount a hostPath).
    # ZenML caches Stack objects per stack version: touch the stack so this process sees
    # the updated component. (Same component name: compiled snapshots key settings by it.)
    client.update_stack_component(
        name_id_or_prefix="k8s", component_type=StackComponentType.ORCHESTRATOR, configuration={"local": False}
    )
    client.update_stack("podspec", labels={"phase": "in-cluster"})
    client.activate_stack("podspec")
    assert not client.active_stack.orchestrator.config.is_local
    from zenml.integrations.kubernetes.orchestrators import kubernetes_orchestrator_entrypoint as entrypoint

    with mock.patch.object(sys, "argv", ["kubernetes_orchestrator_entrypoint", *args]):
        entrypoint.main()

    for p in patches:
        p.stop()
    (workdir / "captured.json").write_text(json.dumps(captured, default=str))


# --------------------------------------------------------------------------------------
# test side


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("podspec")
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "podspec-test", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "podspec-test",
            }
        )
    )
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(workdir / "zenml"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "ZENML_ENABLE_REPO_INIT_WARNINGS": "false",
        "SCREGNET_HOME": str(workdir / "home"),
        "KUBECONFIG": str(kubeconfig),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for var in ("MLFLOW_TRACKING_URI", "SCREGNET_ARTIFACTS", "ZENML_STORE_URL", "ZENML_ACTIVE_STACK_ID"):
        env.pop(var, None)
    result = subprocess.run(
        [sys.executable, __file__, str(workdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, f"driver failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return json.loads((workdir / "captured.json").read_text())


def _jobs_by_step(captured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for job in captured["jobs"]:
        step = job["metadata"].get("labels", {}).get("step_name")
        out[step or "orchestrator"] = job
    return out


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def _client_side_test_mode(pod: dict[str, Any]) -> dict[str, Any]:
    """Undo what `local=True` (client side only, see the module docstring) adds: the
    hostPath volume and the replaced pod securityContext. Returns the pod without them."""
    pod = copy.deepcopy(pod)
    assert [v["name"] for v in pod["volumes"] if "hostPath" in v] == ["local-stores"]
    assert pod["securityContext"] == {"runAsUser": os.getuid(), "runAsGroup": os.getgid()}
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "local-stores"]
    for c in pod["containers"]:
        c["volumeMounts"] = [m for m in c.get("volumeMounts") or [] if m["name"] != "local-stores"]
        c["env"] = [e for e in c.get("env") or [] if e["name"] != "ZENML_LOCAL_STORES_PATH"]
    del pod["securityContext"]
    return pod


def _assert_restricted(where: str, pod: dict[str, Any], *, pod_level: bool = True) -> None:
    if pod_level:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
    assert not any("hostPath" in v for v in pod["volumes"]), where
    container = pod["containers"][0]
    csc = container["securityContext"]
    assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 10001, where
    assert csc["allowPrivilegeEscalation"] is False and csc["privileged"] is False, where
    assert csc["readOnlyRootFilesystem"] is True and csc["capabilities"] == {"drop": ["ALL"]}, where
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}, where
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"]), where
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/home/scregnet", "/app"} <= mounts, where


def _validate(obj: dict[str, Any], kind: str) -> None:
    import kubernetes_validate

    # ZenML's Job manifests leave apiVersion/kind unset (the API server defaults them from
    # the endpoint the body is POSTed to): fill them in as the server would.
    obj = {"apiVersion": "batch/v1", "kind": kind, **{k: v for k, v in obj.items() if v is not None}}
    assert obj["kind"] == kind and obj["apiVersion"] == "batch/v1", (obj["kind"], obj["apiVersion"])
    # ZenML's container securityContext still carries the snake_case keys of the default
    # V1SecurityContext with null values (the API server drops unknown fields with a
    # warning): validate without the nulls, strictly otherwise.
    body = _strip_none(obj)
    body["metadata"]["namespace"] = NAMESPACE
    kubernetes_validate.validate(body, kubernetes_validate.latest_version(), strict=True)


# configs/k8s.yaml embeds with Geneformer in 4 shards: one GPU pod per shard, CPU pods to sum them.
GPU_STEPS = {"embed_shard", "embed_shard_2", "embed_shard_3", "embed_shard_4"}
MERGE_STEPS = {"add_gene_sums", "add_gene_sums_2", "add_gene_sums_3", "finalize_embedding"}


def test_a_job_per_step_plus_the_orchestrator_job(captured):
    jobs = _jobs_by_step(captured)
    assert (
        set(jobs)
        == {"orchestrator", "ingest", "validate", "preprocess", "train", "evaluate", "register"}
        | GPU_STEPS
        | MERGE_STEPS
    )
    docker = yaml.safe_load((ROOT / "configs" / "k8s.yaml").read_text())["settings"]["docker"]
    for step, job in jobs.items():
        pod = _pod(job)
        image = docker["parent_image"] + ("-cuda" if step in GPU_STEPS else "")
        assert pod["containers"][0]["image"] == image, step
        args = pod["containers"][0]["args"]
        if step == "orchestrator":
            assert pod["containers"][0]["command"][-1].endswith("kubernetes_orchestrator_entrypoint")
        else:
            assert args[args.index("--step_name") + 1] == step, args


@pytest.mark.parametrize("step", sorted(GPU_STEPS))
def test_embed_pod_gets_the_gpu_settings_of_configs_k8s_yaml(captured, step):
    pod = _pod(_jobs_by_step(captured)[step])
    container = pod["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    shm = [v for v in pod["volumes"] if (v.get("emptyDir") or {}).get("medium") == "Memory"]
    assert len(shm) == 1
    assert {"name": shm[0]["name"], "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "scregnet-assets" for v in pod["volumes"])


def test_cpu_steps_get_no_gpu(captured):
    jobs = _jobs_by_step(captured)
    train = _pod(jobs["train"])["containers"][0]["resources"]
    assert train["requests"] == {"cpu": "2", "memory": "8Gi"}
    preprocess = _pod(jobs["preprocess"])["containers"][0]["resources"]
    assert preprocess["limits"] == {"cpu": "2", "memory": "16Gi"}
    for step, job in jobs.items():
        if step not in GPU_STEPS:
            pod = _pod(job)
            assert "nvidia.com/gpu" not in (pod["containers"][0]["resources"].get("limits") or {}), step
            assert not pod.get("nodeSelector"), step


def test_step_pods_are_restricted_and_valid(captured):
    for step, job in _jobs_by_step(captured).items():
        if step == "orchestrator":
            continue
        pod = _pod(job)
        assert pod["serviceAccountName"] == "scregnet-step", step
        assert pod["automountServiceAccountToken"] is False, step
        _assert_restricted(step, pod)
        _validate(job, "Job")


def test_orchestrator_job_is_restricted_and_valid(captured):
    job = copy.deepcopy(_jobs_by_step(captured)["orchestrator"])
    pod = _client_side_test_mode(_pod(job))
    assert pod["serviceAccountName"] == "scregnet-orchestrator"
    assert "automountServiceAccountToken" not in pod  # it needs its token
    _assert_restricted("orchestrator", pod, pod_level=False)
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    job["spec"]["template"]["spec"] = pod
    _validate(job, "Job")


def test_scheduled_run_becomes_a_cron_job_with_our_policy(captured):
    (cron,) = copy.deepcopy(captured["cron_jobs"])
    spec = cron["spec"]
    assert spec["schedule"] == CRON
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    pod = _client_side_test_mode(spec["jobTemplate"]["spec"]["template"]["spec"])
    assert pod["serviceAccountName"] == "scregnet-orchestrator"
    _assert_restricted("cronjob", pod, pod_level=False)
    spec["jobTemplate"]["spec"]["template"]["spec"] = pod
    _validate(cron, "CronJob")


if __name__ == "__main__":  # the subprocess
    _drive(Path(sys.argv[1]))
