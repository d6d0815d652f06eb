#!/usr/bin/env bash
# make image: build the pax image with whatever engine this machine has, and say how long it took.
#   docker when a daemon answers `docker info`, else podman (with docker/containers.conf when the
#   machine has no containers.conf); the base image BASE_IMAGE when it is there or can be pulled,
#   else a local Debian base made by debootstrap, with its Python (and it says so); torch from
#   TORCH_INDEX, or, for a CPU image (IMAGE_TORCH=cpu, the default without nvidia-smi), from
#   docker/wheelhouse/, filled here with the CPU wheel and every pinned dependency, so the build
#   needs no index at all. Both are kept: the second build reuses the base, the wheels and the
#   engine's layer cache. With COMPOSE_DEPS=1 it also builds, on the same base, the PostgreSQL
#   and nginx images compose's postgres profile needs where no registry can be reached
#   (localhost/pax-postgres, localhost/pax-proxy). The last line is JSON: the engine, the base,
#   each step's seconds, the image's size.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-pax:latest}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim-bookworm}"
LOCAL_BASE="localhost/pax-base:bookworm"
PY="${PY:-.venv/bin/python}"
if [ -z "${IMAGE_TORCH:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then IMAGE_TORCH=cuda; else IMAGE_TORCH=cpu; fi
fi
say() { echo "make image: $*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif command -v podman >/dev/null 2>&1; then
  ENGINE=podman
  if [ ! -f /etc/containers/containers.conf ] && [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF="$PWD/docker/containers.conf"
  fi
else
  say "no container engine: install docker (with a running daemon) or podman"; exit 2
fi

# 1) the base
t0=$(now)
base_made=false
if ! $ENGINE image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
   && ! timeout 60 $ENGINE pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  if $ENGINE image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    say "$BASE_IMAGE can't be pulled here: using the local Debian base $LOCAL_BASE"
  else
    command -v debootstrap >/dev/null 2>&1 || { say "$BASE_IMAGE can't be pulled and debootstrap is missing (apt-get install debootstrap)"; exit 2; }
    say "$BASE_IMAGE can't be pulled here: making a local Debian base ($LOCAL_BASE) with debootstrap"
    root=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | $ENGINE import - "$LOCAL_BASE" >/dev/null
    rm -rf "$root"
    base_made=true
  fi
  BASE_IMAGE="$LOCAL_BASE"
fi
t1=$(now)

# 2) the wheels (a CPU image: everything from docker/wheelhouse, no index in the build)
if [ "$IMAGE_TORCH" = cpu ]; then
  reqs=$("$PY" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(p["dependencies"] + p["optional-dependencies"]["postgres"]))
PY
)
  # shellcheck disable=SC2086 - one argument per requirement
  "$PY" -m pip download -q --only-binary=:all: -d docker/wheelhouse $reqs "setuptools>=69" wheel
fi
t2=$(now)

# 3) the image
build_net=()
[ "$ENGINE" = podman ] && build_net=(--network host --format docker)  # docker format: HEALTHCHECK kept
$ENGINE build -q "${build_net[@]}" -t "$IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" \
  ${TORCH_INDEX:+--build-arg TORCH_INDEX="$TORCH_INDEX"} . >/dev/null
t3=$(now)
if [ "${COMPOSE_DEPS:-0}" = 1 ]; then
  for part in postgres proxy; do
    $ENGINE build -q "${build_net[@]}" -t "localhost/pax-$part" -f "docker/$part/Dockerfile" \
      --build-arg BASE_IMAGE="$BASE_IMAGE" . >/dev/null
  done
fi
t4=$(now)
size=$($ENGINE image inspect "$IMAGE" --format '{{.Size}}')
say "$IMAGE built with $ENGINE on $BASE_IMAGE in $(secs "$t0" "$t3") s"
printf '{"image": "%s", "engine": "%s", "base": "%s", "base_made": %s, "torch": "%s", "base_s": %s, "wheels_s": %s, "build_s": %s, "compose_deps_s": %s, "size_bytes": %s}\n' \
  "$IMAGE" "$ENGINE" "$BASE_IMAGE" "$base_made" "$IMAGE_TORCH" "$(secs "$t0" "$t1")" \
  "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$(secs "$t3" "$t4")" "$size"
