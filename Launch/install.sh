#!/usr/bin/env bash
# Builds swiftpar for release with the Swift standard library and Foundation linked in (the
# binary needs no Swift toolchain where it runs), and installs it with its manual page and
# bash, zsh and fish completions. Open MPI is loaded at run time, only by MPI jobs.
#
#   Launch/install.sh                       # into /usr/local as root, ~/.local otherwise
#   Launch/install.sh --prefix /opt/swiftpar
#   Launch/install.sh --uninstall [--prefix DIR]   # removes exactly what it installed
set -euo pipefail
script="$0"

if [ "$(id -u)" -eq 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) sed -n '2,8p' "$script"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in
    "") echo "install.sh: --prefix needs a directory, not an empty word" >&2; exit 2 ;;
    -*) echo "install.sh: --prefix needs a directory, not the option $prefix" >&2; exit 2 ;;
    "~") prefix="$HOME" ;;
    "~/"*) prefix="$HOME/${prefix#"~/"}" ;;
esac
# A relative prefix is where the command was run from, not this repository.
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix="${prefix%/}"
[ -n "$prefix" ] || prefix=/
cd "$(dirname "$script")/.."

manifest="$prefix/share/swiftpar/installed-files"
files=(
    "bin/swiftpar"
    "share/man/man1/swiftpar.1"
    "share/bash-completion/completions/swiftpar"
    "share/zsh/site-functions/_swiftpar"
    "share/fish/vendor_completions.d/swiftpar.fish"
)

# The manifest lists, relative to the prefix, each file installed ("file PATH") and each folder
# the install made ("folder PATH"), deepest last. Older manifests list absolute file paths.
# Entries that lead outside the prefix are refused, never followed.
read_manifest() {
    manifest_files=()
    manifest_folders=()
    local kind path
    while IFS= read -r line; do
        case "$line" in
            "") continue ;;
            "folder .") manifest_folders+=(.); continue ;;
            "file "*) kind=file; path="${line#file }" ;;
            "folder "*) kind=folder; path="${line#folder }" ;;
            "$prefix/"*) kind=file; path="${line#"$prefix/"}" ;;
            *) echo "install.sh: $manifest lists $line, which is not under $prefix: was the prefix moved? Nothing was removed." >&2; exit 1 ;;
        esac
        case "/$path/" in
            *"/../"*|*"/./"*|"//"*) echo "install.sh: $manifest lists $line, which leads outside $prefix; nothing was removed" >&2; exit 1 ;;
        esac
        if [ "$kind" = file ]; then manifest_files+=("$path"); else manifest_folders+=("$path"); fi
    done < "$manifest"
}

if [ "$uninstall" -eq 1 ]; then
    [ -f "$manifest" ] || { echo "install.sh: nothing installed by install.sh under $prefix ($manifest is missing)" >&2; exit 1; }
    read_manifest
    for file in ${manifest_files[@]+"${manifest_files[@]}"}; do rm -f -- "$prefix/$file"; done
    rm -f -- "$manifest"
    # Only folders the install made, deepest first, and only if nothing else is in them.
    if [ "${#manifest_folders[@]}" -gt 0 ]; then
        while IFS= read -r folder; do
            if [ "$folder" = . ]; then rmdir -- "$prefix" 2>/dev/null || true; else rmdir -- "$prefix/$folder" 2>/dev/null || true; fi
        done < <(printf '%s\n' "${manifest_folders[@]}" | awk '{ print gsub("/", "/"), $0 }' | sort -rn | cut -d' ' -f2-)
    fi
    echo "swiftpar removed from $prefix"
    exit 0
fi

# Before a build of several minutes: can the prefix be written at all?
existing="$prefix"
while [ ! -e "$existing" ]; do existing="$(dirname "$existing")"; done
if [ ! -d "$existing" ] || [ ! -w "$existing" ]; then
    echo "install.sh: cannot install under $prefix: $existing is not a folder this user can write to" >&2
    exit 1
fi

# Folders made now, and those an earlier install made (kept in its manifest), are removed
# again by --uninstall; folders that were there before stay. Read before the build, so that a
# manifest that cannot be trusted stops the install at once.
previous_folders=()
if [ -f "$manifest" ]; then read_manifest; previous_folders=(${manifest_folders[@]+"${manifest_folders[@]}"}); fi

stage="$(mktemp -d)"
made=()          # folders this run made, outermost first
placed=()        # new files written under temporary names, not yet renamed into place
cleanup() {
    local status=$?
    rm -rf "$stage"
    if [ "$status" -ne 0 ]; then
        for file in ${placed[@]+"${placed[@]}"}; do rm -f -- "$file"; done
        for (( i=${#made[@]}-1; i>=0; i-- )); do
            if [ "${made[i]}" = . ]; then rmdir -- "$prefix" 2>/dev/null || true; else rmdir -- "$prefix/${made[i]}" 2>/dev/null || true; fi
        done
    fi
}
trap cleanup EXIT
Launch/build-release.sh "$stage"

# The prefix itself, when this install makes it ("." in the manifest).
if [ ! -d "$prefix" ]; then
    mkdir -p -- "$prefix"
    made+=(.)
fi
for file in "${files[@]}" share/swiftpar/installed-files; do
    folder="$(dirname "$file")"
    chain=()
    while [ "$folder" != . ]; do chain=("$folder" ${chain[@]+"${chain[@]}"}); folder="$(dirname "$folder")"; done
    for folder in ${chain[@]+"${chain[@]}"}; do
        if [ ! -d "$prefix/$folder" ]; then
            mkdir -p -- "$prefix/$folder"
            made+=("$folder")
        fi
    done
done

# Every file goes in under a temporary name first, then all are renamed into place: a full
# disk or an interruption leaves the earlier install (or nothing) as it was, never a cut file.
for file in "${files[@]}"; do
    mode=644
    [ "$file" = bin/swiftpar ] && mode=755
    placed+=("$prefix/$file.install-new")
    install -m "$mode" "$stage/$file" "$prefix/$file.install-new"
done
if ! version="$("$prefix/bin/swiftpar.install-new" --version 2>&1)"; then
    echo "install.sh: the binary written to $prefix/bin does not run there: $version" >&2
    echo "install.sh: (a file system mounted noexec?) nothing was installed" >&2
    exit 1
fi
{
    for folder in ${previous_folders[@]+"${previous_folders[@]}"} ${made[@]+"${made[@]}"}; do echo "folder $folder"; done | awk '!seen[$0]++'
    for file in "${files[@]}"; do echo "file $file"; done
} > "$manifest.install-new"
placed+=("$manifest.install-new")
for file in "${files[@]}"; do mv -f -- "$prefix/$file.install-new" "$prefix/$file"; done
mv -f -- "$manifest.install-new" "$manifest"
placed=()
made=()
echo "installed $version into $prefix"
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on your PATH" ;;
esac
