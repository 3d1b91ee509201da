#!/bin/sh
# build-image.sh assembles the build context of deploy/Containerfile and
# builds the image. No registry is needed: the image is FROM scratch, and the
# binary is built here with CGO_ENABLED=0.
#
#   deploy/build-image.sh [--tag NAME] [--context DIR] [--context-only]
#
#   --tag NAME       image name (default localhost/p2ptls:latest)
#   --context DIR    assemble the context in DIR (default: a temporary
#                    directory, removed afterwards); DIR must not exist or be empty
#   --context-only   assemble the context and stop; build it yourself with
#                    podman build --format docker -t NAME DIR
#
# Environment: ENGINE (podman, else docker), ENGINE_FLAGS (extra global flags
# for the engine, e.g. "--runtime /usr/sbin/runc --cgroup-manager=cgroupfs"),
# VERSION (the version 'p2ptls version' prints; default: git describe),
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), GO (default go).
set -eu

tag=localhost/p2ptls:latest
ctx=
only=false
while [ $# -gt 0 ]; do
	case $1 in
	--tag) tag=${2:?--tag needs a name}; shift 2 ;;
	--context) ctx=${2:?--context needs a directory}; shift 2 ;;
	--context-only) only=true; shift ;;
	-h | --help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ ! -s "$bundle" ]; then
	echo "build-image.sh: no CA bundle at $bundle: install ca-certificates or set CA_BUNDLE" >&2
	exit 1
fi
if [ -z "$ctx" ]; then
	if $only; then
		echo "build-image.sh: --context-only needs --context DIR" >&2
		exit 2
	fi
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
elif [ -e "$ctx" ] && [ -n "$(ls -A "$ctx")" ]; then
	echo "build-image.sh: $ctx is not empty; give a new or empty directory" >&2
	exit 2
fi
mkdir -p "$ctx"

version=${VERSION:-$(git -C "$root" describe --always --dirty 2>/dev/null || echo dev)}
(cd "$root" && CGO_ENABLED=0 ${GO:-go} build -trimpath \
	-ldflags "-s -w -X github.com/p2pstream/p2ptls/commands.version=$version" \
	-o "$ctx/p2ptls" ./cmd/p2ptls)
chmod 0755 "$ctx/p2ptls"
cp "$bundle" "$ctx/ca-certificates.crt"
chmod 0644 "$ctx/ca-certificates.crt"
mkdir -p "$ctx/rootfs"
mkdir -m 0700 "$ctx/rootfs/data"
cp "$root/deploy/Containerfile" "$ctx/Containerfile"
if $only; then
	echo "$ctx"
	exit 0
fi

engine=${ENGINE:-}
if [ -z "$engine" ]; then
	if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
format=
# podman writes OCI images by default, which have no HEALTHCHECK.
[ "$(basename "$engine")" = podman ] && format="--format docker"
# shellcheck disable=SC2086 # ENGINE_FLAGS and format are lists of words
$engine ${ENGINE_FLAGS:-} build $format -t "$tag" -f "$ctx/Containerfile" "$ctx"
