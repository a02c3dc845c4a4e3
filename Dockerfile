# syntax=docker/dockerfile:1
#
# scregnet runtime image: the `scregnet` CLI, the ZenML steps/pipelines and every pinned
# dependency from pyproject.toml, installed into /opt/venv, run as uid 10001.
#
# Variants (build args, so that both `docker build` and ZenML's image builders, including
# Kaniko which forwards build args but not --target, can select them):
#
#   CPU (default): python:3.11-slim + torch==2.13.0 CPU wheel from the PyTorch CPU index
#     docker build -t REGISTRY/scregnet:TAG .
#
#   CUDA (GPU steps, e.g. `embed`): same base, torch==2.13.0 from PyPI, whose Linux x86_64
#   wheel is the CUDA build and pulls the CUDA runtime as nvidia-* wheels. The node needs
#   only the NVIDIA driver + device plugin; nothing CUDA is installed from apt.
#     docker build --build-arg TORCH_VARIANT=cuda -t REGISTRY/scregnet:TAG-cuda .
#
#   A specific PyTorch wheel index (e.g. a CUDA minor version) can be forced with
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/<variant>
#
# Offline/daemonless builds (podman + a wheelhouse, no registry): infra/images/build_local.sh.
#
# Fully pinned builds: if a `constraints.txt` (e.g. `uv pip compile pyproject.toml -o
# constraints.txt`) is in the build context, every install below is constrained by it.
#
# No secrets are baked in: credentials (S3, MLflow, PostgreSQL) arrive at runtime as
# environment variables from Kubernetes Secrets.

ARG BASE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------------------
FROM ${BASE} AS python-base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# --------------------------------------------------------------------------------------
FROM python-base AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=""
# Runtime-only packages the cluster needs but pyproject.toml does not (yet) list:
# the PostgreSQL driver used by the MLflow backend store and the Optuna study storage.
ARG EXTRA_REQUIREMENTS="psycopg2-binary==2.9.13"
# Offline builds from a wheelhouse (infra/images/build_local.sh): pip reads these as its own
# settings in every install below, e.g. --build-arg PIP_NO_INDEX=1 --build-arg
# PIP_FIND_LINKS=/mnt with the wheels mounted at build time (podman build --volume
# DIR:/mnt:ro), so no index is contacted and no wheel lands in a layer. Not given
# (a normal `docker build`): unset, and pip uses the indexes named below.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS

RUN python -m venv "${VIRTUAL_ENV}"

WORKDIR /src

# Dependencies first (cached until pyproject.toml/constraints change): the exact
# dependency list of pyproject.toml, extracted with the standard library.
COPY pyproject.toml README.md constraints.tx[t] ./
RUN python -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(d["project"]["dependencies"]))' \
      > /tmp/requirements.txt

# torch alone from the variant's index; the rest from PyPI (torch then already satisfies
# the ==2.13.0 pin, a "+cpu" local version included).
RUN if [ -f constraints.txt ]; then export PIP_CONSTRAINT=/src/constraints.txt; fi \
 && case "${TORCH_VARIANT}" in \
      cpu)  index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
      *)    echo "TORCH_VARIANT must be 'cpu' or 'cuda', got '${TORCH_VARIANT}'" >&2; exit 2 ;; \
    esac \
 && grep -q "^torch==${TORCH_VERSION}$" /tmp/requirements.txt \
 && pip install --no-cache-dir --index-url "${index}" "torch==${TORCH_VERSION}" \
 && pip install --no-cache-dir -r /tmp/requirements.txt ${EXTRA_REQUIREMENTS}

# Then the project itself (no dependency resolution: everything is already in place).
COPY scregnet ./scregnet
COPY steps ./steps
COPY pipelines ./pipelines
COPY materializers ./materializers
RUN pip install --no-cache-dir --no-deps . \
 && pip check \
 && python -c "import torch; print('torch', torch.__version__, 'cuda build:', torch.version.cuda)"

# --------------------------------------------------------------------------------------
FROM python-base AS runtime

ARG TORCH_VARIANT=cpu
ARG APP_UID=10001

LABEL org.opencontainers.image.title="scregnet" \
      org.opencontainers.image.description="Gene regulatory link prediction from scRNA-seq (ZenML + MLflow)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.scregnet.torch-variant="${TORCH_VARIANT}"

# Unprivileged user with a fixed uid (matches runAsUser in infra/k8s and configs/*.yaml).
# /app is ZenML's working directory (code downloads land in /app/code); HOME holds ZenML,
# MLflow, Hugging Face and scregnet state. Both are writable by the user; in Kubernetes
# they are emptyDir mounts, so the root filesystem can stay read-only.
RUN groupadd --system --gid "${APP_UID}" scregnet \
 && useradd --system --uid "${APP_UID}" --gid scregnet --create-home \
      --home-dir /home/scregnet --shell /usr/sbin/nologin scregnet \
 && mkdir -p /app /home/scregnet/.scregnet \
 && chown -R scregnet:scregnet /app /home/scregnet

COPY --from=builder /opt/venv /opt/venv
# Run configs travel with the image so in-cluster launchers (the watcher) can use them.
COPY configs /opt/scregnet/configs

ENV HOME=/home/scregnet \
    SCREGNET_HOME=/home/scregnet/.scregnet \
    SCREGNET_CONFIG_DIR=/opt/scregnet/configs \
    ZENML_CONFIG_PATH=/home/scregnet/.config/zenml \
    ZENML_ANALYTICS_OPT_IN=false \
    ZENML_ENABLE_REPO_INIT_WARNINGS=false \
    ZENML_LOGGING_COLORS_DISABLED=true \
    GX_ANALYTICS_ENABLED=false \
    HF_HOME=/home/scregnet/.cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    TMPDIR=/tmp

WORKDIR /app
USER 10001:10001

ENTRYPOINT ["scregnet"]
CMD ["demo"]
