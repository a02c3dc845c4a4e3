#!/usr/bin/env bash
# Smoke test of a locally built scregnet image, as its own non-root user, without a Docker
# daemon: buildah runs the image's programs (`podman run` is refused on hosts that forbid
# raising RLIMIT_NOFILE). Any failed check stops the script with "SMOKE FAILED: ..." and
# exit status 1.
#
#   1. the image's configured user is not root and is what the processes run as
#   2. `scregnet --help`
#   3. the image's ENTRYPOINT + CMD (`scregnet demo`) with the Kubernetes pods' writable
#      mounts as volumes (/home/scregnet holding SCREGNET_HOME and the ZenML store, /app,
#      /tmp), and nothing written outside them (the pods' root filesystem is read-only)
#   4. two pipeline steps the way ZenML's Kubernetes orchestrator launches step pods:
#      infra/images/k8s_step_pod.py (mounted, not part of the image) computes the command
#      (`python -m zenml.entrypoints.entrypoint --entrypoint_config_source ... --snapshot_id
#      ... --step_name ...`), arguments and environment as the orchestrator pod would, for a
#      new run of the demo's snapshot; each step then runs as its own process with exactly
#      those, a fresh ZENML_CONFIG_PATH (a pod's home is an empty emptyDir), and must end
#      completed (executed, not cached) in the ZenML store
#   5. image facts: `pip check`, size, files that do not belong in it (.git, the project's
#      tests, pip caches, build leftovers); printed and written to $SCREGNET_IMAGE_CACHE/logs
#
# Usage:  infra/images/smoke_local.sh [IMAGE]       (default localhost/scregnet:cpu; needs root)
#
# Environment: SCREGNET_IMAGE_CACHE (as for build_local.sh; scratch volumes and logs go
# there), SMOKE_KEEP=1 keeps the container and the volumes for inspection.
set -euo pipefail

IMAGE="${1:-localhost/scregnet:cpu}"
case "$IMAGE" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;; esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${SCREGNET_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scregnet-images}"

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf '\nSMOKE FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (podman's storage needs it)"
for tool in buildah podman python3; do command -v "$tool" > /dev/null || fail "$tool is needed"; done
podman image exists "$IMAGE" || fail "no image $IMAGE (build it with infra/images/build_local.sh)"

mkdir -p "$CACHE/logs"
WORK="$(mktemp -d "$CACHE/smoke-XXXXXX")"
FACTS="$CACHE/logs/smoke-$(echo "$IMAGE" | tr -c 'A-Za-z0-9.\n' '-')-$(date +%Y%m%d-%H%M%S).facts"
: > "$FACTS"
fact() { printf '%s\t%s\n' "$1" "$2" | tee -a "$FACTS"; }

CTR=""
FACTS_CTR=""
cleanup() {
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        log "kept: container $CTR, volumes $WORK"
        return
    fi
    [ -z "$FACTS_CTR" ] || { buildah umount "$FACTS_CTR" > /dev/null 2>&1 || true; buildah rm "$FACTS_CTR" > /dev/null 2>&1 || true; }
    [ -z "$CTR" ] || buildah rm "$CTR" > /dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

inspect() { podman image inspect --format "$1" "$IMAGE"; }
fact image "$IMAGE ($(inspect '{{.Id}}' | cut -c1-12), revision $(inspect '{{index .Labels "org.opencontainers.image.revision"}}'))"

# --------------------------------------------------------------------------------------
# 1. user

IMAGE_USER="$(inspect '{{.Config.User}}')"
fact configured_user "$IMAGE_USER"
case "${IMAGE_USER%%:*}" in
    "" | root | 0) fail "the image runs as root (USER is '$IMAGE_USER')" ;;
esac
APP_UID="${IMAGE_USER%%:*}"
APP_GID="${IMAGE_USER#*:}"
[ "$APP_GID" != "$IMAGE_USER" ] || APP_GID="$APP_UID"

# The pods' writable mounts (configs/k8s.yaml, infra/k8s): emptyDirs at these paths.
mkdir -p "$WORK/home" "$WORK/app" "$WORK/tmp"
chown "$APP_UID:$APP_GID" "$WORK/home" "$WORK/app"
chmod 1777 "$WORK/tmp"
CTR="$(buildah from --pull=never --name "scregnet-smoke-$$" "$IMAGE")"
MOUNTS=(/home/scregnet /app /tmp /opt/scregnet-smoke)

in_image() {  # in_image [--env K=V ...] -- CMD...: as the image's user, with the volumes
    local opts=()
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    buildah run --isolation chroot --user "$IMAGE_USER" \
        --volume "$WORK/home:/home/scregnet" --volume "$WORK/app:/app" --volume "$WORK/tmp:/tmp" \
        --volume "$ROOT/infra/images:/opt/scregnet-smoke:ro" \
        --env SCREGNET_HOME=/home/scregnet/.scregnet "${opts[@]}" "$CTR" -- "$@"
}

RAN_AS="$(in_image -- id -u)"
fact uid_in_container "$RAN_AS"
if [ "$RAN_AS" != "$APP_UID" ] || [ "$RAN_AS" = 0 ]; then fail "processes run as uid $RAN_AS, expected $APP_UID"; fi

# --------------------------------------------------------------------------------------
# 2. scregnet --help

log "scregnet --help"
in_image -- scregnet --help > "$WORK/help.log" 2>&1 || { cat "$WORK/help.log" >&2; fail "scregnet --help exited non-zero"; }
grep -q '^ *demo ' "$WORK/help.log" || { cat "$WORK/help.log" >&2; fail "scregnet --help lists no demo command"; }
fact help ok

# --------------------------------------------------------------------------------------
# 3. the image's default command: scregnet demo

mapfile -t DEFAULT_CMD < <(inspect '{{json .Config.Entrypoint}}{{json .Config.Cmd}}' \
    | python3 -c 'import json, sys; d = json.JSONDecoder(); s = sys.stdin.read().strip(); a, i = d.raw_decode(s); b, _ = d.raw_decode(s[i:]); print("\n".join((a or []) + (b or [])))')
log "default command: ${DEFAULT_CMD[*]} (SCREGNET_HOME=/home/scregnet/.scregnet on a volume)"
start=$SECONDS
rc=0
in_image -- "${DEFAULT_CMD[@]}" > "$WORK/demo.log" 2>&1 || rc=$?
fact demo_command "${DEFAULT_CMD[*]}"
fact demo_exit_code "$rc"
fact demo_seconds $((SECONDS - start))
printf -- '--- demo output (last 12 lines) ---\n' && tail -n 12 "$WORK/demo.log" && printf -- '---\n'
[ "$rc" = 0 ] || { tail -n 60 "$WORK/demo.log" >&2; fail "${DEFAULT_CMD[*]} exited with $rc"; }
# (That the demo's pipeline run ended completed is checked by k8s_step_pod.py prepare below.)
cp "$WORK/demo.log" "${FACTS%.facts}.demo.log"

# --------------------------------------------------------------------------------------
# 4. step pods

log "step pods: the orchestrator pod's commands for a new run of the demo's snapshot"
in_image -- python /opt/scregnet-smoke/k8s_step_pod.py prepare --out /tmp/pods.json > "$WORK/prepare.log" 2>&1 \
    || { cat "$WORK/prepare.log" >&2; fail "computing the step pods' commands failed"; }
tail -n 1 "$WORK/prepare.log"
NPODS="$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["pods"]))' "$WORK/tmp/pods.json")"
for ((i = 0; i < NPODS; i++)); do
    # One line per --env K=V, then "--", then the command and its arguments.
    mapfile -t POD < <(python3 - "$WORK/tmp/pods.json" "$i" << 'EOF'
import json, sys
pod = json.load(open(sys.argv[1]))["pods"][int(sys.argv[2])]
assert not any("\n" in s for s in [*pod["env"].values(), *pod["command"], *pod["args"]])
for key, value in pod["env"].items():
    print(f"--env\n{key}={value}")
print(f"--env\nZENML_CONFIG_PATH=/tmp/pod-{pod['step']}/zenml")
print("--\n" + "\n".join(pod["command"] + pod["args"]))
EOF
    )
    step="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["pods"][int(sys.argv[2])]["step"])' "$WORK/tmp/pods.json" "$i")"
    cmd=("${POD[@]}")
    while [ "${cmd[0]}" != -- ]; do cmd=("${cmd[@]:1}"); done
    log "pod $step: ${cmd[*]:1}"
    start=$SECONDS
    rc=0
    in_image "${POD[@]}" > "$WORK/pod-$step.log" 2>&1 || rc=$?
    fact "pod_${step}" "exit $rc in $((SECONDS - start))s: ${cmd[*]:1}"
    cp "$WORK/pod-$step.log" "${FACTS%.facts}.pod-$step.log"
    [ "$rc" = 0 ] || { tail -n 60 "$WORK/pod-$step.log" >&2; fail "step pod $step exited with $rc"; }
done
in_image -- python /opt/scregnet-smoke/k8s_step_pod.py check --pods /tmp/pods.json > "$WORK/check.log" 2>&1 \
    || { cat "$WORK/check.log" >&2; fail "the step pods' runs are not complete in the ZenML store"; }
grep -v '^\s*$' "$WORK/check.log" | tail -n "$NPODS" | while IFS= read -r line; do fact step_run "$line"; done

# Nothing may be written outside the writable mounts: the pods' root filesystem is read-only.
OUTSIDE="$(podman diff "$CTR" | awk '{print $2}' | while IFS= read -r path; do
    inside=0
    # A mount point, below one, or a parent directory buildah touched to create one.
    for m in "${MOUNTS[@]}"; do case "$m/" in "$path"/*) inside=1 ;; esac; case "$path" in "$m"/*) inside=1 ;; esac; done
    [ "$inside" = 1 ] || echo "$path"
done)"
fact written_outside_mounts "${OUTSIDE:-none}"
[ -z "$OUTSIDE" ] || fail "the runs wrote outside the writable mounts (read-only root filesystem in pods): $OUTSIDE"

# --------------------------------------------------------------------------------------
# 5. image facts

log "pip check"
rc=0
in_image -- python -m pip check > "$WORK/pipcheck.log" 2>&1 || rc=$?
fact pip_check "$(tr '\n' ' ' < "$WORK/pipcheck.log")(exit $rc)"
[ "$rc" = 0 ] || fail "pip check in the image: $(cat "$WORK/pipcheck.log")"
fact torch "$(in_image -- python -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2> /dev/null)"
fact python "$(in_image -- python --version 2>&1)"
SIZE="$(inspect '{{.Size}}')"
fact size "$(numfmt --to=si --round=nearest --suffix=B "$SIZE") ($SIZE bytes)"

FACTS_CTR="$(buildah from --pull=never --name "scregnet-smoke-facts-$$" "$IMAGE")"
MNT="$(buildah mount "$FACTS_CTR")"
SITE="$(cd "$MNT" && echo opt/venv/lib/python3*/site-packages)"
du_of() { (cd "$MNT" && du -sch "$@" 2> /dev/null | tail -n 1 | cut -f1); }
fact venv_size "$(du_of opt/venv)"
fact largest_packages "$(cd "$MNT/$SITE" && du -s -- * | sort -rn | head -n 8 | awk '{printf "%s %dM, ", $2, $1 / 1024}')"
# Must not be there: a failure.
BAD="$(cd "$MNT" || exit 1; {
    find . -xdev -name .git -prune -print
    for d in tests test; do [ -e "$SITE/$d" ] && echo "./$SITE/$d (the project's tests as a package)"; done
    for d in root/.cache home/scregnet/.cache src wheelhouse; do [ -e "$d" ] && echo "./$d"; done
    find tmp -mindepth 1 -maxdepth 1 -print
    find "$SITE" -maxdepth 1 -name '*.egg-link' -print
} 2> /dev/null || true)"
fact forbidden_files "${BAD:-none}"
# Worth knowing, not a failure: third-party test suites and bytecode caches.
fact thirdparty_test_dirs "$(cd "$MNT" && find "$SITE" -type d \( -name tests -o -name test \) -prune | wc -l) dirs, $(cd "$MNT" && find "$SITE" -type d \( -name tests -o -name test \) -prune -print0 | du -sch --files0-from=- 2> /dev/null | tail -n 1 | cut -f1)"
fact pycache "$(cd "$MNT" && find . -xdev -type d -name __pycache__ -prune -print0 | du -sch --files0-from=- 2> /dev/null | tail -n 1 | cut -f1)"
fact apt_lists "$(cd "$MNT" && find var/lib/apt/lists -type f 2> /dev/null | wc -l) files"
[ -z "$BAD" ] || fail "files that do not belong in the image: $BAD"

printf '\nSMOKE OK: %s (facts in %s)\n' "$IMAGE" "$FACTS"
