#!/usr/bin/env bash
# Builds the example connectors written in Python and JavaScript into WebAssembly
# components, with pinned tools:
#
#   examples/connectors/build.sh [OUT_DIR]
#
# writes OUT_DIR/python-hubspot.wasm and OUT_DIR/js-couchdb.wasm. OUT_DIR defaults to
# $CARGO_TARGET_DIR/polyglot, or target/polyglot in the repository.
#
# Needs python3 (with venv and pip) and node with npm. The tools are installed once under
# $SLUICE_POLYGLOT_CACHE (default ~/.cache/sluice-polyglot): componentize-py at the version
# python-hubspot/requirements.txt pins, in a virtual environment, and componentize-js at
# the versions js-couchdb/package-lock.json pins. A component whose inputs
# (sources, WIT, pins) have not changed since it was last built is not built again, so a
# second run takes a moment.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/polyglot}"
cache="${SLUICE_POLYGLOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-polyglot}"
wit="$root/wit/0.1.0"

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3 (3.9 or later, with the venv and pip modules; Debian: apt-get install python3 python3-venv)")
command -v node >/dev/null 2>&1 || missing+=("node (18 or later; Debian: apt-get install nodejs)")
command -v npm >/dev/null 2>&1 || missing+=("npm (Debian: apt-get install npm)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "build.sh: cannot build the Python and JavaScript connectors; install:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
fi

mkdir -p "$cache" "$out"
out="$(cd "$out" && pwd)"
# One build at a time per cache, whoever runs it (two test runs, a test run and a person).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    flock 9
fi

digest() { cat "$@" | sha256sum | cut -c1-16; }
wit_files=("$wit"/*.wit)

# Builds $1 (a name) unless OUT/$1.wasm was built from inputs with digest $2; the command
# that builds it follows, and writes to the path in $tmp.
build_if_changed() {
    local name="$1" inputs="$2"
    shift 2
    local target="$out/$name.wasm" stamp="$out/$name.inputs"
    if [ -f "$target" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
        echo "build.sh: $name.wasm is up to date"
        return
    fi
    tmp="$out/.$name.wasm.tmp"
    rm -f "$tmp"
    echo "build.sh: building $name.wasm"
    "$@"
    mv "$tmp" "$target"
    echo "$inputs" >"$stamp"
}

# --- Python: componentize-py in a virtual environment of its own.
py="$here/python-hubspot"
venv="$cache/componentize-py-$(digest "$py/requirements.txt")"
if [ ! -f "$venv/.complete" ]; then
    echo "build.sh: installing $(grep -v '^#' "$py/requirements.txt") into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py/requirements.txt"
    touch "$venv/.complete"
    # Environments of earlier pins are no longer used.
    find "$cache" -maxdepth 1 -name 'componentize-py-*' ! -path "$venv" -exec rm -rf {} +
fi
build_python() {
    # The app's folder only: nothing from the build's own environment goes in.
    (cd "$py" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" --quiet \
        -d "$wit" -w destination-connector componentize -p "$py" connector -o "$tmp")
}
build_if_changed python-hubspot \
    "$(digest "$py/requirements.txt" "$py/connector.py" "${wit_files[@]}")" build_python

# --- JavaScript: componentize-js through its API, installed with `npm ci`.
js="$here/js-couchdb"
tools="$cache/componentize-js-$(digest "$js/package.json" "$js/package-lock.json")"
if [ ! -f "$tools/.complete" ]; then
    echo "build.sh: installing componentize-js from js-couchdb/package-lock.json into $tools"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp "$js/package.json" "$js/package-lock.json" "$tools/"
    # `npm install` against the lock, not `npm ci`: the lock cannot list the native
    # packages of other platforms that a partial registry mirror lacks, and `npm ci`
    # refuses such a lock. Every package the lock lists is installed at its version.
    (cd "$tools" && npm install --no-audit --no-fund --loglevel=error)
    pinned="$(cd "$js" && node -p 'require("./package.json").devDependencies["@bytecodealliance/componentize-js"]')"
    installed="$(cd "$tools" && node -p 'require("./node_modules/@bytecodealliance/componentize-js/package.json").version')"
    if [ "$installed" != "$pinned" ]; then
        echo "build.sh: installed componentize-js $installed, but js-couchdb/package.json pins $pinned" >&2
        exit 1
    fi
    touch "$tools/.complete"
    find "$cache" -maxdepth 1 -name 'componentize-js-*' ! -path "$tools" -exec rm -rf {} +
fi
# build.mjs imports componentize-js, so it runs from beside the installed node_modules.
cp "$js/build.mjs" "$tools/build.mjs"
build_js() {
    node "$tools/build.mjs" --source "$js/connector.js" --wit "$wit" --out "$tmp" >/dev/null
}
build_if_changed js-couchdb \
    "$(digest "$js/package-lock.json" "$js/build.mjs" "$js/connector.js" "${wit_files[@]}")" build_js

echo "build.sh: components in $out"
