#!/usr/bin/env bash
# Builds swiftpar for release with the Swift standard library and Foundation linked in (the
# binary needs no Swift toolchain where it runs), and installs it with its manual page and
# bash, zsh and fish completions. Open MPI is loaded at run time, only by MPI jobs.
#
#   Launch/install.sh                       # into /usr/local as root, ~/.local otherwise
#   Launch/install.sh --prefix /opt/swiftpar
#   Launch/install.sh --uninstall [--prefix DIR]   # removes exactly what it installed
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
manifest="$prefix/share/swiftpar/installed-files"

if [ "$uninstall" -eq 1 ]; then
    [ -f "$manifest" ] || { echo "install.sh: nothing installed by install.sh under $prefix ($manifest is missing)" >&2; exit 1; }
    while IFS= read -r file; do
        rm -f -- "$file"
    done < "$manifest"
    rm -f -- "$manifest"
    # Folders this script made and left empty.
    for folder in share/swiftpar share/bash-completion/completions share/bash-completion share/zsh/site-functions share/zsh \
                  share/fish/vendor_completions.d share/fish share/man/man1 share/man share bin; do
        rmdir -- "$prefix/$folder" 2>/dev/null || true
    done
    echo "swiftpar removed from $prefix"
    exit 0
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
Launch/build-release.sh "$stage"

files=(
    "bin/swiftpar"
    "share/man/man1/swiftpar.1"
    "share/bash-completion/completions/swiftpar"
    "share/zsh/site-functions/_swiftpar"
    "share/fish/vendor_completions.d/swiftpar.fish"
)
mkdir -p "$prefix/share/swiftpar"
: > "$manifest.new"
for file in "${files[@]}"; do
    mode=644
    [ "$file" = bin/swiftpar ] && mode=755
    install -D -m "$mode" "$stage/$file" "$prefix/$file"
    echo "$prefix/$file" >> "$manifest.new"
done
mv "$manifest.new" "$manifest"
echo "installed $("$prefix/bin/swiftpar" --version) into $prefix"
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on your PATH" ;;
esac
