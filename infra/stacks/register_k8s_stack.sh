#!/usr/bin/env bash
# Register (or update) the scregnet ZenML stack for the Kubernetes orchestrator.
#
#   Kubernetes orchestrator   pipelines run as Jobs in $K8S_NAMESPACE (infra/k8s/)
#   S3 artifact store         ZenML secret <stack>-s3 holds the AWS keys
#   MLflow experiment tracker + MLflow model registry
#                             ZenML secret <stack>-mlflow holds the username/password
#   container registry        optional ZenML secret <stack>-registry for push credentials
#   image builder             local Docker (default) or Kaniko (in-cluster builds)
#
# Prerequisites: the ZenML CLI from this project's environment, connected to a ZenML
# *server* (`zenml login https://...`): a remote orchestrator cannot use a local store.
# Everything is read from the environment; nothing secret is printed or put on a command
# line (secret values go from the environment straight into the ZenML Python client).
#
# Usage: infra/stacks/register_k8s_stack.sh            (re-running updates the components)
#        infra/stacks/register_k8s_stack.sh --help
set -euo pipefail

# ---------------------------------------------------------------------------------------
# Helpers (register_kubeflow_stack.sh sources this file for them; main runs only when this
# file is executed).

ZENML="${ZENML:-zenml}"
PYTHON="${PYTHON:-python3}"

# name + description pairs, checked by require_vars in every script.
COMMON_REQUIRED=(
    S3_ARTIFACT_PATH "s3://bucket/prefix where ZenML stores artifacts"
    AWS_ACCESS_KEY_ID "S3 access key id (stored in the ZenML secret <stack>-s3)"
    AWS_SECRET_ACCESS_KEY "S3 secret access key (stored in the ZenML secret <stack>-s3)"
    MLFLOW_TRACKING_URI "MLflow tracking server URL as reached from the pods, e.g. http://mlflow.scregnet.svc.cluster.local:5000"
    MLFLOW_TRACKING_USERNAME "MLflow username (stored in the ZenML secret <stack>-mlflow)"
    MLFLOW_TRACKING_PASSWORD "MLflow password (stored in the ZenML secret <stack>-mlflow)"
    CONTAINER_REGISTRY_URI "registry the images are pushed to, e.g. ghcr.io/my-org"
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# require_vars NAME "description" [NAME "description" ...]
# Reports every missing variable (not just the first) with what it is for, then exits 2.
# REQUIRE_VARS_ALREADY_MISSING=1 makes it exit even if all of these are set (the caller
# has reported another missing variable itself).
require_vars() {
    local missing="${REQUIRE_VARS_ALREADY_MISSING:-0}"
    while (($# >= 2)); do
        local name="$1" description="$2"
        shift 2
        if [[ -z "${!name:-}" ]]; then
            printf 'error: %s is not set: %s\n' "${name}" "${description}" >&2
            missing=1
        fi
    done
    if ((missing)); then
        printf '\nRun with --help for the full list of variables.\n' >&2
        exit 2
    fi
}

check_common_optional() {
    [[ "${S3_ARTIFACT_PATH}" == s3://* ]] || die "S3_ARTIFACT_PATH must start with s3:// (got '${S3_ARTIFACT_PATH}')"
    case "${MLFLOW_TRACKING_URI}" in
        http://* | https://*) ;;
        *) die "MLFLOW_TRACKING_URI must be an http(s) URL reachable from the pods (got '${MLFLOW_TRACKING_URI}')" ;;
    esac
    : "${CONTAINER_REGISTRY_FLAVOR:=default}"
    : "${IMAGE_BUILDER:=local}"
    : "${KANIKO_NAMESPACE:=scregnet-build}"
    : "${SCREGNET_ALLOW_LOCAL_STORE:=0}"
    case "${IMAGE_BUILDER}" in
        local | kaniko) ;;
        *) die "IMAGE_BUILDER must be 'local' or 'kaniko' (got '${IMAGE_BUILDER}')" ;;
    esac
    if [[ -n "${CONTAINER_REGISTRY_USERNAME:-}" && -z "${CONTAINER_REGISTRY_PASSWORD:-}" ]] ||
        [[ -z "${CONTAINER_REGISTRY_USERNAME:-}" && -n "${CONTAINER_REGISTRY_PASSWORD:-}" ]]; then
        die "set both CONTAINER_REGISTRY_USERNAME and CONTAINER_REGISTRY_PASSWORD, or neither"
    fi
}

preflight() {
    command -v "${ZENML}" >/dev/null 2>&1 || die "the zenml CLI ('${ZENML}') is not on PATH: activate the project's virtualenv (or set ZENML)"
    "${PYTHON}" -c 'import zenml' 2>/dev/null || die "'${PYTHON}' cannot import zenml: activate the project's virtualenv (or set PYTHON)"
    # A remote orchestrator needs a ZenML server that the pods can reach.
    if ! "${PYTHON}" - <<'PY'
import os, sys
from zenml.client import Client
store = Client().zen_store
if store.is_local_store() and os.environ.get("SCREGNET_ALLOW_LOCAL_STORE") != "1":
    print(
        "error: the ZenML client is connected to a local store; Kubernetes/Kubeflow pods "
        "cannot reach it. Connect to a ZenML server first: zenml login <server-url>",
        file=sys.stderr,
    )
    sys.exit(1)
PY
    then
        exit 1
    fi
}

# upsert_secret NAME key=ENV_VAR [key=ENV_VAR ...]
# Values are read from the environment inside Python: never echoed, never in argv.
upsert_secret() {
    local name="$1"
    shift
    log "ZenML secret ${name} (keys: ${*%%=*})"
    SCREGNET_SECRET_NAME="${name}" "${PYTHON}" - "$@" <<'PY'
import os, sys
from zenml.client import Client

name = os.environ["SCREGNET_SECRET_NAME"]
values = {}
for pair in sys.argv[1:]:
    key, env_var = pair.split("=", 1)
    value = os.environ.get(env_var)
    if value:
        values[key] = value
client = Client()
try:
    existing = client.get_secret(name, allow_partial_name_match=False, allow_partial_id_match=False)
except KeyError:
    client.create_secret(name=name, values=values)
else:
    # Keys no longer provided (e.g. an expired AWS_SESSION_TOKEN) are removed.
    stale = [key for key in existing.values if key not in values]
    client.update_secret(name, add_or_update_values=values, remove_values=stale or None)
PY
}

# register_component TYPE NAME FLAVOR [--key=value ...]: register, or update if it exists.
register_component() {
    local type="$1" name="$2" flavor="$3"
    shift 3
    local existing_flavor
    existing_flavor="$(SCREGNET_COMPONENT_TYPE="${type//-/_}" SCREGNET_COMPONENT_NAME="${name}" \
        "${PYTHON}" -c 'import os
from zenml.client import Client
try:
    c = Client().get_stack_component(os.environ["SCREGNET_COMPONENT_TYPE"], os.environ["SCREGNET_COMPONENT_NAME"], allow_name_prefix_match=False)
except KeyError:
    pass
else:
    print("SCREGNET_FLAVOR=" + c.flavor_name)' 2>/dev/null)" || die "could not query the ZenML store for ${type} ${name}"
    existing_flavor="$(sed -n 's/^SCREGNET_FLAVOR=//p' <<<"${existing_flavor}")"
    if [[ -n "${existing_flavor}" ]]; then
        if [[ "${existing_flavor}" != "${flavor}" ]]; then
            die "${type} ${name} exists with flavor '${existing_flavor}', not '${flavor}': remove it from the stack and delete it first (zenml ${type} delete ${name})"
        fi
        log "update ${type} ${name}"
        if (($# > 0)); then
            "${ZENML}" "${type}" update "${name}" "$@"
        fi
    else
        log "register ${type} ${name} (flavor ${flavor})"
        "${ZENML}" "${type}" register "${name}" "--flavor=${flavor}" "$@"
    fi
}

# Artifact store, MLflow tracker + model registry, container registry, image builder.
register_common_components() {
    local kube_context="$1"

    upsert_secret "${STACK_NAME}-s3" \
        aws_access_key_id=AWS_ACCESS_KEY_ID \
        aws_secret_access_key=AWS_SECRET_ACCESS_KEY \
        aws_session_token=AWS_SESSION_TOKEN
    local s3_args=("--path=${S3_ARTIFACT_PATH}" "--authentication_secret=${STACK_NAME}-s3")
    local client_kwargs
    client_kwargs="$("${PYTHON}" -c 'import json, os
kw = {k: os.environ[e] for k, e in (("endpoint_url", "S3_ENDPOINT_URL"), ("region_name", "AWS_DEFAULT_REGION")) if os.environ.get(e)}
print(json.dumps(kw) if kw else "")')"
    if [[ -n "${client_kwargs}" ]]; then
        s3_args+=("--client_kwargs=${client_kwargs}")
    fi
    register_component artifact-store "${STACK_NAME}-artifacts" s3 "${s3_args[@]}"

    upsert_secret "${STACK_NAME}-mlflow" \
        username=MLFLOW_TRACKING_USERNAME \
        password=MLFLOW_TRACKING_PASSWORD
    # Secret references ({{secret.key}}) are resolved by ZenML at runtime.
    register_component experiment-tracker "${STACK_NAME}-mlflow" mlflow \
        "--tracking_uri=${MLFLOW_TRACKING_URI}" \
        "--tracking_username={{${STACK_NAME}-mlflow.username}}" \
        "--tracking_password={{${STACK_NAME}-mlflow.password}}"
    # The MLflow model registry uses the tracker's server: no configuration of its own.
    register_component model-registry "${STACK_NAME}-model-registry" mlflow

    local registry_args=("--uri=${CONTAINER_REGISTRY_URI}")
    if [[ -n "${CONTAINER_REGISTRY_USERNAME:-}" ]]; then
        upsert_secret "${STACK_NAME}-registry" \
            username=CONTAINER_REGISTRY_USERNAME \
            password=CONTAINER_REGISTRY_PASSWORD
        registry_args+=("--authentication_secret=${STACK_NAME}-registry")
    fi
    register_component container-registry "${STACK_NAME}-registry" \
        "${CONTAINER_REGISTRY_FLAVOR}" "${registry_args[@]}"

    if [[ "${IMAGE_BUILDER}" == kaniko ]]; then
        local kaniko_args=(
            "--kubernetes_context=${kube_context}"
            "--kubernetes_namespace=${KANIKO_NAMESPACE}"
        )
        if [[ -n "${KANIKO_DOCKER_CONFIG_SECRET:-}" ]]; then
            kaniko_args+=(
                "--volumes=[{\"name\": \"docker-config\", \"secret\": {\"secretName\": \"${KANIKO_DOCKER_CONFIG_SECRET}\", \"items\": [{\"key\": \".dockerconfigjson\", \"path\": \"config.json\"}]}}]"
                "--volume_mounts=[{\"name\": \"docker-config\", \"mountPath\": \"/kaniko/.docker\"}]"
            )
        fi
        register_component image-builder "${STACK_NAME}-builder" kaniko "${kaniko_args[@]}"
    else
        register_component image-builder "${STACK_NAME}-builder" local
    fi
}

# register_stack ORCHESTRATOR_NAME: register (or update) and activate the stack.
register_stack() {
    local orchestrator="$1"
    local components=(
        -o "${orchestrator}"
        -a "${STACK_NAME}-artifacts"
        -e "${STACK_NAME}-mlflow"
        -r "${STACK_NAME}-model-registry"
        -c "${STACK_NAME}-registry"
        -i "${STACK_NAME}-builder"
    )
    if "${ZENML}" stack describe "${STACK_NAME}" >/dev/null 2>&1; then
        log "update stack ${STACK_NAME}"
        "${ZENML}" stack update "${STACK_NAME}" "${components[@]}"
    else
        log "register stack ${STACK_NAME}"
        "${ZENML}" stack register "${STACK_NAME}" "${components[@]}"
    fi
    "${ZENML}" stack set "${STACK_NAME}"
    log "stack ${STACK_NAME} registered and active"
}

# ---------------------------------------------------------------------------------------
usage_k8s() {
    cat <<'EOF'
Register the scregnet ZenML stack on Kubernetes, from environment variables.

Required:
  K8S_CONTEXT               kubectl context of the target cluster (ignored inside the
                            cluster, where the in-cluster config is used)
  S3_ARTIFACT_PATH          s3://bucket/prefix for ZenML artifacts
  AWS_ACCESS_KEY_ID         S3 credentials, stored in the ZenML secret <stack>-s3
  AWS_SECRET_ACCESS_KEY
  MLFLOW_TRACKING_URI       MLflow tracking server as seen FROM THE PODS, e.g.
                            http://mlflow.scregnet.svc.cluster.local:5000
  MLFLOW_TRACKING_USERNAME  stored in the ZenML secret <stack>-mlflow (ZenML requires
  MLFLOW_TRACKING_PASSWORD  one authentication method for a remote MLflow)
  CONTAINER_REGISTRY_URI    e.g. ghcr.io/my-org, 123456789012.dkr.ecr.eu-west-1.amazonaws.com

Optional (defaults in brackets):
  STACK_NAME                  [scregnet-k8s]
  K8S_NAMESPACE               [scregnet]
  K8S_SERVICE_ACCOUNT         [scregnet-orchestrator]   orchestrator pod
  K8S_STEP_SERVICE_ACCOUNT    [scregnet-step]           step pods
  AWS_SESSION_TOKEN           temporary S3 credentials
  AWS_DEFAULT_REGION          S3 region
  S3_ENDPOINT_URL             S3-compatible endpoint (MinIO, Ceph, ...)
  CONTAINER_REGISTRY_FLAVOR   [default]   default|aws|gcp|azure|github|dockerhub
  CONTAINER_REGISTRY_USERNAME / CONTAINER_REGISTRY_PASSWORD
                              push credentials, stored in the ZenML secret <stack>-registry
  IMAGE_BUILDER               [local]     local (Docker on this machine) | kaniko
  KANIKO_NAMESPACE            [scregnet-build]
  KANIKO_DOCKER_CONFIG_SECRET Kubernetes Secret (type dockerconfigjson) mounted into the
                              Kaniko pod for pushing to the registry
  SCREGNET_ALLOW_LOCAL_STORE  [0]  1: allow registering against a local ZenML store
                              (only for checking this script; runs will not work)
EOF
}

main_k8s() {
    if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
        usage_k8s
        exit 0
    fi

    require_vars \
        K8S_CONTEXT "the kubectl context of the cluster (kubectl config get-contexts)" \
        "${COMMON_REQUIRED[@]}"
    check_common_optional

    : "${K8S_NAMESPACE:=scregnet}"
    : "${K8S_SERVICE_ACCOUNT:=scregnet-orchestrator}"
    : "${K8S_STEP_SERVICE_ACCOUNT:=scregnet-step}"
    : "${STACK_NAME:=scregnet-k8s}"

    preflight

    # --- orchestrator -----------------------------------------------------------------------
    # incluster=true: inside the cluster (the watcher CronJob) the in-cluster config is used;
    # elsewhere ZenML falls back to kubernetes_context.
    register_component orchestrator "${STACK_NAME}-orchestrator" kubernetes \
        "--kubernetes_context=${K8S_CONTEXT}" \
        "--kubernetes_namespace=${K8S_NAMESPACE}" \
        "--incluster=true" \
        "--service_account_name=${K8S_SERVICE_ACCOUNT}" \
        "--step_pod_service_account_name=${K8S_STEP_SERVICE_ACCOUNT}"

    register_common_components "${K8S_CONTEXT}"
    register_stack "${STACK_NAME}-orchestrator"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main_k8s "$@"
fi
