#!/usr/bin/env bash
# Install mdmt-nas with its test (and nni, ray) extras plus the example plugin
# packages, then run the whole test suite. Used by the README and by .ci/run.
# pip prints what it collects and installs (a fresh venv downloads for several
# minutes); pytest ends with its 15 slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing mdmt-nas[test,nni,ray] (editable) and its dependencies"
python -m pip install --progress-bar off -e '.[test,nni,ray]'
for plugin in plugins/*/; do
  if [ -f "$plugin/pyproject.toml" ]; then
    echo "==> installing the example plugin $plugin"
    python -m pip install --quiet --no-deps -e "$plugin"
  fi
done
echo "==> running the tests"
python -m pytest -q -p no:cacheprovider --durations=15 tests plugins
