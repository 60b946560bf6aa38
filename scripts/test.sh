#!/usr/bin/env bash
# Install mdmt-nas with its test (and nni) extras plus the example plugin
# packages, then run the whole test suite. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e '.[test,nni]'
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] && python -m pip install --quiet --no-deps -e "$plugin"
done
python -m pytest -q -p no:cacheprovider tests plugins
