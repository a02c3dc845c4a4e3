#!/usr/bin/env bash
# Register (or update) the scregnet ZenML stack for the Kubeflow (Pipelines 2.x) orchestrator.
#
# Same artifact store / MLflow / container registry / image builder as
# register_k8s_stack.sh (whose helpers this script reuses); only the orchestrator differs.
# Use it with configs/kubeflow.yaml:
#
#   scregnet train --config configs/kubeflow.yaml
#
# The machine running pipelines needs ZenML's kubeflow integration packages
# (kfp>=2.6, kfp-kubernetes>=1.1; `zenml integration install kubeflow`), which are not
# part of pyproject.toml. Nothing secret is printed or put on a command line.
set -euo pipefail

# shellcheck source=infra/stacks/register_k8s_stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/register_k8s_stack.sh"

usage_kubeflow() {
    cat <<'EOF'
Register the scregnet ZenML stack on Kubeflow Pipelines, from environment variables.

Required:
  K8S_CONTEXT or KUBEFLOW_HOSTNAME
                            kubectl context of the cluster running Kubeflow Pipelines,
                            and/or the KFP API endpoint (e.g. https://kubeflow.example.com/pipeline)
  S3_ARTIFACT_PATH, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD,
  CONTAINER_REGISTRY_URI    as for register_k8s_stack.sh (see its --help)

Optional (defaults in brackets):
  STACK_NAME                [scregnet-kubeflow]
  KUBEFLOW_NAMESPACE        [kubeflow]   namespace of the Kubeflow Pipelines deployment
  KUBEFLOW_USER_NAMESPACE   profile namespace the runs go to (multi-user Kubeflow)
  KUBEFLOW_USERNAME / KUBEFLOW_PASSWORD
                            Dex credentials for a multi-user Kubeflow; stored in the
                            ZenML secret <stack>-kubeflow
  plus every optional variable of register_k8s_stack.sh (registry credentials,
  IMAGE_BUILDER, S3_ENDPOINT_URL, ...)
EOF
}

main_kubeflow() {
    if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
        usage_kubeflow
        exit 0
    fi

    local target_missing=0
    if [[ -z "${K8S_CONTEXT:-}" && -z "${KUBEFLOW_HOSTNAME:-}" ]]; then
        printf 'error: neither K8S_CONTEXT nor KUBEFLOW_HOSTNAME is set: give the kubectl context of the Kubeflow cluster and/or the Kubeflow Pipelines API endpoint\n' >&2
        target_missing=1
    fi
    REQUIRE_VARS_ALREADY_MISSING="${target_missing}" require_vars "${COMMON_REQUIRED[@]}"
    check_common_optional
    if [[ -n "${KUBEFLOW_USERNAME:-}" && -z "${KUBEFLOW_PASSWORD:-}" ]] ||
        [[ -z "${KUBEFLOW_USERNAME:-}" && -n "${KUBEFLOW_PASSWORD:-}" ]]; then
        die "set both KUBEFLOW_USERNAME and KUBEFLOW_PASSWORD, or neither"
    fi
    if [[ "${IMAGE_BUILDER}" == kaniko && -z "${K8S_CONTEXT:-}" ]]; then
        die "IMAGE_BUILDER=kaniko needs K8S_CONTEXT (the cluster the Kaniko pods run in)"
    fi

    : "${STACK_NAME:=scregnet-kubeflow}"
    : "${KUBEFLOW_NAMESPACE:=kubeflow}"

    preflight

    local kfp_args=("--kubeflow_namespace=${KUBEFLOW_NAMESPACE}")
    if [[ -n "${K8S_CONTEXT:-}" ]]; then
        kfp_args+=("--kubernetes_context=${K8S_CONTEXT}")
    fi
    if [[ -n "${KUBEFLOW_HOSTNAME:-}" ]]; then
        kfp_args+=("--kubeflow_hostname=${KUBEFLOW_HOSTNAME}")
    fi
    if [[ -n "${KUBEFLOW_USER_NAMESPACE:-}" ]]; then
        kfp_args+=("--user_namespace=${KUBEFLOW_USER_NAMESPACE}")
    fi
    if [[ -n "${KUBEFLOW_USERNAME:-}" ]]; then
        upsert_secret "${STACK_NAME}-kubeflow" \
            username=KUBEFLOW_USERNAME \
            password=KUBEFLOW_PASSWORD
        kfp_args+=(
            "--client_username={{${STACK_NAME}-kubeflow.username}}"
            "--client_password={{${STACK_NAME}-kubeflow.password}}"
        )
    fi
    register_component orchestrator "${STACK_NAME}-orchestrator" kubeflow "${kfp_args[@]}"

    register_common_components "${K8S_CONTEXT:-}"
    register_stack "${STACK_NAME}-orchestrator"
}

main_kubeflow "$@"
