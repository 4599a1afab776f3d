#!/usr/bin/env bash
# The test suite (what CI runs). Extra arguments go to pytest.
# Two pytest-xdist workers (JBOT_EDGE_TEST_WORKERS; 0 = in-process), one test file per worker so module fixtures
# are built once: on the 2-core CI machine the suite takes ~11 min instead of ~16.5 (subprocess compiles and
# Pythia runs are single-threaded). Session fixtures share cached Pythia files through a file lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
cd "$root"
set +e
"$root/.venv/bin/python" -m pytest -n "${JBOT_EDGE_TEST_WORKERS:-2}" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure of the setup" >&2
  exit 1
fi
exit "$status"
