#!/usr/bin/env bash
# Installs the pinned agent CLIs that codemill's tests drive for real into <repo>/.tools/npm.
#
# Idempotent: when every CLI is already installed at its pinned version nothing is fetched, so
# ./scripts/test can call this on every run. Binaries end up in .tools/npm/node_modules/.bin/
# (claude, codex, gemini, opencode); tests look there, or at CODEMILL_<NAME>_BIN.
set -euo pipefail

# package@version pins; bump them together with the recorded fixtures under crates/agent/tests/fixtures.
PINS=(
    "@anthropic-ai/claude-code@2.1.197"
    "@openai/codex@0.169.0"
    "@google/gemini-cli@0.61.0"
    "opencode-ai@1.18.33"
    # Not an agent: drives Debian's Chromium in the dashboard's browser tests.
    "playwright-core@1.65.2"
)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo/.tools/npm"

# The version npm recorded for a package, from its installed package.json.
installed_version() {
    local manifest="$prefix/node_modules/$1/package.json"
    [[ -f "$manifest" ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$manifest" 2>/dev/null || true
}

missing=()
for pin in "${PINS[@]}"; do
    name="${pin%@*}"
    version="${pin##*@}"
    if [[ "$(installed_version "$name")" != "$version" ]]; then
        missing+=("$pin")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "agent CLIs already installed in $prefix/node_modules/.bin"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is required to install ${missing[*]} (install Node.js >= 20)" >&2
    exit 1
fi

echo "installing ${missing[*]} into $prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --save-exact "${missing[@]}"

for pin in "${PINS[@]}"; do
    name="${pin%@*}"
    version="${pin##*@}"
    got="$(installed_version "$name")"
    if [[ "$got" != "$version" ]]; then
        echo "error: expected $name $version in $prefix, found '${got:-nothing}'" >&2
        exit 1
    fi
done
# Each CLI must start on this platform (native binaries ship inside the npm packages).
for bin in claude codex gemini opencode; do
    if ! "$prefix/node_modules/.bin/$bin" --version >/dev/null 2>&1; then
        echo "error: $prefix/node_modules/.bin/$bin --version failed" >&2
        exit 1
    fi
done
echo "agent CLIs installed in $prefix/node_modules/.bin"
