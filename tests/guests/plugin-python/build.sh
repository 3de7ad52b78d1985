#!/usr/bin/env bash
# Builds plugin.wasm, a whole `plugin` component, from app.py with componentize-py's default
# flags, using the pinned tool that examples/policy-python/build.sh installs there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
venv=../../../examples/policy-python/.venv
if [[ ! -x $venv/bin/componentize-py ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r ../../../examples/policy-python/requirements.txt
fi
VIRTUAL_ENV="$(cd "$venv" && pwd)" "$venv/bin/componentize-py" --wit-path ../../../wit --world plugin componentize app --output plugin.wasm
