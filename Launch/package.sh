#!/usr/bin/env bash
# Writes a release archive, swiftpar-VERSION-linux-ARCH.tar.gz, and its SHA-256 sum: the
# binary (Swift runtime linked in), its manual page, bash/zsh/fish completions, the README, the
# licence and the changelog. Unpack it anywhere and put its bin/ on the PATH.
#
#   Launch/package.sh [OUTPUT-DIRECTORY]     # default: the current directory
set -euo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    -*) echo "package.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "package.sh: one output directory at most (try --help)" >&2; exit 2; }
[ -d "${1:-.}" ] || { echo "package.sh: ${1:-.} is not a directory" >&2; exit 2; }
output="$(cd "${1:-.}" && pwd)"
cd "$(dirname "$0")/.."

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
Launch/build-release.sh "$stage/tree"
version="$("$stage/tree/bin/swiftpar" --version | awk '{print $2}')"
name="swiftpar-$version-linux-$(uname -m)"
mv "$stage/tree" "$stage/$name"
cp README.md LICENSE CHANGELOG.md "$stage/$name/"
tar -C "$stage" -czf "$output/$name.tar.gz" --owner=0 --group=0 --sort=name "$name"
(cd "$output" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "$output/$name.tar.gz"
echo "$output/$name.tar.gz.sha256"
