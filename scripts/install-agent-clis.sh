#!/usr/bin/env bash
# Installs the pinned agent CLIs that codemill's tests drive for real into <repo>/.tools/npm.
#
# Idempotent: a CLI already installed at the pinned version is left alone, so ./scripts/test can
# call this on every run. The binary is then .tools/npm/node_modules/.bin/claude (the tests look
# there, or at $CODEMILL_CLAUDE_BIN).
set -euo pipefail

CLAUDE_CODE_VERSION="2.1.197"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$repo/.tools/npm"
claude="$prefix/node_modules/.bin/claude"

installed_version() {
    # `claude --version` prints "2.1.197 (Claude Code)"; running it also proves the native
    # binary for this platform is there and executes.
    if [[ -x "$claude" ]]; then
        "$claude" --version 2>/dev/null | awk '{print $1}' || true
    fi
}

if [[ "$(installed_version)" == "$CLAUDE_CODE_VERSION" ]]; then
    echo "claude-code $CLAUDE_CODE_VERSION already installed: $claude"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is required to install @anthropic-ai/claude-code (install Node.js >= 18)" >&2
    exit 1
fi

echo "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION into $prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --save-exact \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"

version="$(installed_version)"
if [[ "$version" != "$CLAUDE_CODE_VERSION" ]]; then
    echo "error: expected claude-code $CLAUDE_CODE_VERSION at $claude, found '${version:-nothing}'" >&2
    exit 1
fi
echo "claude-code $CLAUDE_CODE_VERSION installed: $claude"
