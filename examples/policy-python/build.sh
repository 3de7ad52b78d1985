#!/usr/bin/env bash
# Builds policy.wasm, a `pricing-policy` component of the contract in ../../wit, from app.py.
# Works from any directory and from a fresh checkout: the pinned tools go in .venv here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt

# componentize-py adds the active venv's site-packages to the app's path, or else the system
# Python's: name ours, so that nothing from the machine's own packages reaches the component.
VIRTUAL_ENV="$PWD/.venv" .venv/bin/componentize-py --wit-path ../../wit --world pricing-policy componentize app --output policy.wasm
