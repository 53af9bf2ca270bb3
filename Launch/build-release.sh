#!/usr/bin/env bash
# Builds the release binary with the Swift standard library and Foundation linked in and the
# git commit it is built from, and lays it out with its manual page and shell completions
# under STAGE (bin/, share/man/man1/, share/bash-completion/, share/zsh/, share/fish/).
# Used by install.sh and package.sh.
#
#   Launch/build-release.sh STAGE
set -euo pipefail
case "${1:-}" in
    "") echo "usage: Launch/build-release.sh STAGE" >&2; exit 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "build-release.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
# A relative STAGE is where the command was run from, not this repository.
stage="$1"
case "$stage" in /*) ;; *) stage="$PWD/$stage" ;; esac
cd "$(dirname "$0")/.."

commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then commit="$commit-modified"; fi
echo "building swiftpar (release, static Swift runtime, commit $commit)..." >&2
build=(swift build -c release --product swiftpar --static-swift-stdlib --scratch-path .build/static
       -Xcc "-DSWIFTPAR_COMMIT=\"$commit\"")
"${build[@]}" >&2
binary="$("${build[@]}" --show-bin-path)/swiftpar"
# swift-argument-parser's manual generator, built from the package's own dependency.
tool=(swift build -c release --product generate-manual --scratch-path .build/static -Xcc "-DSWIFTPAR_COMMIT=\"$commit\"")
"${tool[@]}" >&2

mkdir -p "$stage/bin" "$stage/share/man/man1" "$stage/share/bash-completion/completions" \
         "$stage/share/zsh/site-functions" "$stage/share/fish/vendor_completions.d"
cp "$binary" "$stage/bin/swiftpar"
strip "$stage/bin/swiftpar" 2>/dev/null || true
"$stage/bin/swiftpar" --generate-completion-script bash > "$stage/share/bash-completion/completions/swiftpar"
"$stage/bin/swiftpar" --generate-completion-script zsh > "$stage/share/zsh/site-functions/_swiftpar"
"$stage/bin/swiftpar" --generate-completion-script fish > "$stage/share/fish/vendor_completions.d/swiftpar.fish"
"$(dirname "$binary")/generate-manual" "$stage/bin/swiftpar" --output-directory "$stage/share/man/man1" \
    --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" >&2
