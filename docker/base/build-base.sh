#!/usr/bin/env bash
# A Debian bookworm base image built from Debian's own packages, for machines that reach no
# public image registry (no `FROM python:...` pull works there): debootstrap --variant=minbase,
# plus Python 3.11 with venv, git and CA certificates, imported as IMAGE (default
# s2s-base:bookworm). The images then build on it with --build-arg BASE=IMAGE (`make images`
# does both). Needs root, debootstrap and a running Docker engine; about 3 minutes.
set -euo pipefail
IMAGE=${1:-s2s-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/s2s-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,git,ca-certificates \
    bookworm "$root" "$MIRROR" >/dev/null
# what a slim image does without: apt lists, docs, caches
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "$IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
