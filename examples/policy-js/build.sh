#!/usr/bin/env bash
# Builds policy.wasm, a `pricing-policy` component of the contract in ../../wit, from app.js.
# Works from any directory and from a fresh checkout: the locked tools go in node_modules here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! npm ls --silent >/dev/null 2>&1; then
  npm ci --no-audit --no-fund
fi

./node_modules/.bin/componentize-js app.js --wit ../../wit --world-name pricing-policy --out policy.wasm
