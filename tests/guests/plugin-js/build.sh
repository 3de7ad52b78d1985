#!/usr/bin/env bash
# Builds plugin.wasm, a whole `plugin` component, from app.js with componentize-js's default
# flags, using the locked tools that examples/policy-js/build.sh installs there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tools=../../../examples/policy-js
if ! (cd "$tools" && npm ls --silent >/dev/null 2>&1); then
  (cd "$tools" && npm ci --no-audit --no-fund)
fi
"$tools/node_modules/.bin/componentize-js" app.js --wit ../../../wit --world-name plugin --out plugin.wasm
