#!/usr/bin/env bash
# Installs what swiftpar needs on Debian/Ubuntu that is not there yet: Open MPI (library,
# headers and mpirun), pkg-config; for the tests, primesieve and GNU parallel (references), and Slurm,
# munge and iproute2 (a real single-node Slurm and namespace hosts).
# Swift itself must already be installed (swift.org).
# Safe to run again: it installs nothing when everything is present.
set -euo pipefail

missing=()
for package in libopenmpi-dev openmpi-bin pkg-config primesieve-bin parallel slurm-wlm munge iproute2; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "swiftpar setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "swiftpar setup: swift is not on the PATH; install a Swift 6 toolchain from swift.org first" >&2
    exit 1
fi
if ! pkg-config --exists ompi-c; then
    echo "swiftpar setup: pkg-config cannot find ompi-c (Open MPI's C library)" >&2
    exit 1
fi
