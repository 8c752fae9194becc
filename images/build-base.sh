#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 from Debian's packages alone, for hosts that
# cannot pull from a registry (no Docker Hub, air-gapped). Needs root, debootstrap and a Debian
# mirror. Usage: images/build-base.sh TAG [MIRROR]
set -euo pipefail
tag=${1:?usage: build-base.sh TAG [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/selfprog-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"
# Keep the image small: no package caches or documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/usr/bin/python3"]' - "$tag"
