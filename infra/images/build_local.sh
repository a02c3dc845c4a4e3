#!/usr/bin/env bash
# Build the scregnet image with Debian's own tools: no Docker daemon, no container registry,
# no package index reachable from inside the build.
#
#   1. base image    localhost/debian-base:bookworm, made once with debootstrap from Debian's
#                    package mirror (Python 3.11 = the project's requires-python) and
#                    `podman import`; reused while it exists.
#   2. wheelhouse    every wheel the image installs, fetched on this host with pip from
#                    pyproject.toml's dependencies under constraints.txt (the full lock):
#                    cpu = torch's CPU wheel, cuda = PyPI's CUDA torch + its nvidia-* wheels.
#                    Reused while constraints.txt, the dependency list and the variant are
#                    unchanged.
#   3. image         the project's Dockerfile, unchanged, built with `podman build --isolation
#                    chroot` on that base; pip inside the build installs only from the
#                    wheelhouse (bind-mounted read-only, so no wheel lands in a layer).
#
# The build context is a fresh copy of the working tree (git-tracked and untracked,
# not-ignored files, so uncommitted edits are built); .dockerignore applies to it as usual.
#
# Usage:  infra/images/build_local.sh [cpu|cuda]        (default cpu; needs root)
#
# Environment (all optional):
#   SCREGNET_IMAGE_CACHE  where the rootfs, wheelhouses, build contexts and logs live; keep it
#                         outside the repository (default ${XDG_CACHE_HOME:-$HOME/.cache}/scregnet-images)
#   SCREGNET_IMAGE        image name (default localhost/scregnet:<variant>)
#   SCREGNET_BASE_IMAGE   base image name (default localhost/debian-base:bookworm)
#   DEBIAN_MIRROR         Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   TORCH_INDEX_URL       where the host's pip looks for torch (default: PyTorch's CPU index for
#                         cpu, PyPI for cuda); the host's own pip configuration (find-links,
#                         mirrors) is used for cpu as well
#   PYTHON                host Python 3.11 with pip used to fill the wheelhouse (default python3)
#   REFRESH_WHEELS=1      refill the wheelhouse even if its inputs did not change
#   REBUILD_BASE=1        remake the base image (and the debootstrap rootfs)
#   NO_LAYER_CACHE=1      build every Dockerfile step again (podman build --no-cache)
#
# The same Dockerfile builds with a normal Docker engine and a public base image:
#   docker build -t REGISTRY/scregnet:TAG .
#   docker build --build-arg TORCH_VARIANT=cuda -t REGISTRY/scregnet:TAG-cuda .
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

case "${1:-cpu}" in
    cpu | cuda) VARIANT="${1:-cpu}" ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "variant must be 'cpu' or 'cuda', got '$1'" ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SCREGNET_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scregnet-images}"
IMAGE="${SCREGNET_IMAGE:-localhost/scregnet:$VARIANT}"
BASE_IMAGE="${SCREGNET_BASE_IMAGE:-localhost/debian-base:bookworm}"
SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"

case "$CACHE" in
    "$ROOT" | "$ROOT"/*) die "SCREGNET_IMAGE_CACHE ($CACHE) must be outside the repository ($ROOT)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and podman's storage need it)"
for tool in podman buildah git numfmt; do
    command -v "$tool" > /dev/null || die "$tool is needed (apt-get install podman buildah debootstrap crun)"
done
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2> /dev/null \
    || die "$PYTHON is not Python 3.11 (the image's Python; the wheelhouse must match it)"
"$PYTHON" -m pip --version > /dev/null || die "$PYTHON has no pip"

mkdir -p "$CACHE/logs"
STAMP="$(date +%Y%m%d-%H%M%S)"
TIMES="$CACHE/logs/build-$VARIANT-$STAMP.times"
: > "$TIMES"
record() { printf '%s\t%s\n' "$1" "$2" | tee -a "$TIMES" >&2; }

# --------------------------------------------------------------------------------------
# 1. base image

make_base() {
    local rootfs="$CACHE/rootfs-$SUITE"
    if [ "${REBUILD_BASE:-0}" = 1 ] || [ ! -f "$rootfs/.complete" ]; then
        command -v debootstrap > /dev/null || die "debootstrap is not installed"
        log "debootstrap $SUITE (minbase + python3) from $DEBIAN_MIRROR -> $rootfs"
        rm -rf "$rootfs" "$rootfs.tmp"
        # python-is-python3: the Dockerfile calls `python`, as in the python:3.11 images.
        debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
            "$SUITE" "$rootfs.tmp" "$DEBIAN_MIRROR" > "$CACHE/logs/debootstrap-$STAMP.log" 2>&1 \
            || die "debootstrap failed, see $CACHE/logs/debootstrap-$STAMP.log"
        # Package caches and lists are not needed at runtime (as in Debian's -slim images).
        rm -rf "$rootfs.tmp"/var/cache/apt/archives/*.deb "$rootfs.tmp"/var/cache/apt/*.bin \
            "$rootfs.tmp"/var/lib/apt/lists/* "$rootfs.tmp"/usr/share/man/* "$rootfs.tmp"/usr/share/info/*
        mv "$rootfs.tmp" "$rootfs"
        touch "$rootfs/.complete"
    fi
    log "podman import $rootfs -> $BASE_IMAGE"
    podman rmi --force "$BASE_IMAGE" > /dev/null 2>&1 || true
    if ! tar --numeric-owner --exclude=./.complete -C "$rootfs" -c . \
        | podman import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["/bin/bash"]' \
            - "$BASE_IMAGE" > /dev/null; then
        podman rmi --force "$BASE_IMAGE" > /dev/null 2>&1 || true
        die "importing $rootfs as $BASE_IMAGE failed"
    fi
    # The base must run Python with venv (`podman run` may be refused on hosts that forbid
    # raising RLIMIT_NOFILE, so buildah runs it).
    local ctr ok=0
    ctr="$(buildah from --pull=never "$BASE_IMAGE")"
    buildah run --isolation chroot "$ctr" -- python -c 'import venv, ssl' || ok=$?
    buildah rm "$ctr" > /dev/null
    [ "$ok" = 0 ] || { podman rmi --force "$BASE_IMAGE" > /dev/null; die "$BASE_IMAGE has no working python"; }
}

t0=$SECONDS
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE exists: reused"
    record base reused
else
    make_base
    record base_s $((SECONDS - t0))
fi

# --------------------------------------------------------------------------------------
# 2. wheelhouse

WHEELS="$CACHE/wheelhouse-$VARIANT"
mkdir -p "$WHEELS"
# What the Dockerfile's builder installs: pyproject's dependencies (extracted the same way),
# the Dockerfile's EXTRA_REQUIREMENTS default, and the build backend for `pip install .`.
"$PYTHON" - "$ROOT" > "$WHEELS/.requirements.txt" << 'EOF'
import re, sys, tomllib
from pathlib import Path
root = Path(sys.argv[1])
project = tomllib.loads((root / "pyproject.toml").read_text())
print("\n".join(project["project"]["dependencies"]))
print("\n".join(project["build-system"]["requires"]))
text = re.sub(r"\\\n", " ", (root / "Dockerfile").read_text())
m = re.search(r'^ARG EXTRA_REQUIREMENTS="?([^"\n]*)"?$', text, re.M)
print("\n".join((m.group(1) if m else "").split()))
EOF
TORCH_VERSION="$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' "$WHEELS/.requirements.txt")"
[ -n "$TORCH_VERSION" ] || die "pyproject.toml pins no torch==VERSION"
grep -q "^ARG TORCH_VERSION=$TORCH_VERSION\$" "$ROOT/Dockerfile" \
    || die "Dockerfile's TORCH_VERSION differs from pyproject's torch==$TORCH_VERSION"
KEY="$(cat "$ROOT/constraints.txt" "$WHEELS/.requirements.txt" | sha256sum | cut -c1-16)-$VARIANT"

fill_wheelhouse() {
    local pip=("$PYTHON" -m pip)
    log "wheelhouse $WHEELS: torch==$TORCH_VERSION ($VARIANT)"
    find "$WHEELS" -maxdepth 1 -name 'torch-*.whl' -delete
    if [ "$VARIANT" = cpu ]; then
        # The host's pip configuration stays in force (a local mirror or find-links may hold
        # the CPU wheel); PyTorch's CPU index otherwise.
        "${pip[@]}" download --no-deps --retries 1 --timeout 30 --dest "$WHEELS" \
            --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" "torch==$TORCH_VERSION"
        ls "$WHEELS"/torch-"$TORCH_VERSION"+cpu-*.whl > /dev/null 2>&1 \
            || die "no CPU build of torch $TORCH_VERSION was found (set TORCH_INDEX_URL)"
    else
        # Only PyPI (or TORCH_INDEX_URL): a CPU wheel from a host find-links must not win.
        PIP_FIND_LINKS="$WHEELS" "${pip[@]}" download --no-deps --dest "$WHEELS" \
            --index-url "${TORCH_INDEX_URL:-https://pypi.org/simple}" "torch==$TORCH_VERSION"
        ls "$WHEELS"/torch-"$TORCH_VERSION"-*.whl > /dev/null 2>&1 \
            || die "no CUDA build of torch $TORCH_VERSION was downloaded"
    fi
    # Everything else, resolved against the lock, with this torch as the only local torch
    # (PIP_FIND_LINKS replaces the host's find-links). `pip wheel` builds any sdist here,
    # so the image needs no compiler.
    PIP_FIND_LINKS="$WHEELS" "${pip[@]}" wheel --wheel-dir "$WHEELS" \
        -c "$ROOT/constraints.txt" -r "$WHEELS/.requirements.txt"
    local torches
    torches="$(find "$WHEELS" -maxdepth 1 -name 'torch-*.whl' | wc -l)"
    [ "$torches" -eq 1 ] || die "expected one torch wheel in $WHEELS, found $torches"
    echo "$KEY" > "$WHEELS/.key"
}

t0=$SECONDS
if [ "${REFRESH_WHEELS:-0}" != 1 ] && [ "$(cat "$WHEELS/.key" 2> /dev/null)" = "$KEY" ]; then
    log "wheelhouse $WHEELS is up to date with constraints.txt: reused"
    record wheelhouse reused
else
    rm -f "$WHEELS/.key"
    fill_wheelhouse 2>&1 | tee "$CACHE/logs/wheelhouse-$VARIANT-$STAMP.log" >&2
    [ "$(cat "$WHEELS/.key" 2> /dev/null)" = "$KEY" ] || die "filling the wheelhouse failed"
    record wheelhouse_s $((SECONDS - t0))
fi
record wheelhouse_files "$(find "$WHEELS" -maxdepth 1 -name '*.whl' | wc -l)"
record wheelhouse_size "$(du -sh "$WHEELS" | cut -f1)"

# --------------------------------------------------------------------------------------
# 3. image

CONTEXT="$CACHE/context-$VARIANT"
log "build context: copy of $ROOT -> $CONTEXT"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -c) | tar -C "$CONTEXT" -x
REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2> /dev/null || REVISION="$REVISION-dirty"

log "podman build $IMAGE (TORCH_VARIANT=$VARIANT, base $BASE_IMAGE, revision $REVISION)"
BUILD_LOG="$CACHE/logs/build-$VARIANT-$STAMP.log"
EXTRA_BUILD_FLAGS=()
[ "${NO_LAYER_CACHE:-0}" != 1 ] || EXTRA_BUILD_FLAGS+=(--no-cache)
t0=$SECONDS
# --format docker: the OCI image format has no SHELL, and buildah would run the Dockerfile's
# RUN lines with /bin/sh instead of bash -o pipefail.
# The wheelhouse is mounted on /mnt, which every Debian image has: a new mount point would be
# left behind as an empty directory in each stage, the final image included.
if ! podman build --isolation chroot --format docker \
    --build-arg BASE="$BASE_IMAGE" \
    --build-arg TORCH_VARIANT="$VARIANT" \
    --build-arg PIP_NO_INDEX=1 \
    --build-arg PIP_FIND_LINKS=/mnt \
    --volume "$WHEELS:/mnt:ro" \
    --label org.opencontainers.image.revision="$REVISION" \
    "${EXTRA_BUILD_FLAGS[@]}" \
    --tag "$IMAGE" \
    "$CONTEXT" 2>&1 | tee "$BUILD_LOG" >&2; then
    die "podman build failed, see $BUILD_LOG"
fi
record build_s $((SECONDS - t0))
rm -rf "$CONTEXT"

SIZE="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
record image "$IMAGE"
record image_size_bytes "$SIZE"
record image_size "$(numfmt --to=si --round=nearest --suffix=B "$SIZE")"
log "built $IMAGE; times and sizes in $TIMES; build log $BUILD_LOG"
