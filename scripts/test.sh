#!/usr/bin/env bash
# The test command (README "Set up", step 2; CI runs exactly this through .ci/run). Arguments go to pytest.
#
# It makes, or reuses, two virtual environments in the checkout:
#   .venv       the CPU build of torch 2.13.0 and envcheck (editable) with its test extras; the suite runs here
#   .venv-cuda  the CUDA build of torch 2.14.1 (CUDA 13.0) alone: the torch probe's tests run its interpreter
#               to read a real CUDA build's version, arch list, cuDNN and NCCL, GPU or not
# An environment that exists is reused: pip then finds every requirement met and only envcheck is
# reinstalled. Set ENVCHECK_CUDA_TORCH_PYTHON to another CUDA torch's python to test that one instead.
#
# The HTML reports' browser tests (tests/render/test_html_browser.py) drive the distribution's Chromium
# through Playwright (a test dependency; it downloads no browser). Run as root on a Debian-like machine (CI),
# this installs the package chromium when it is missing; otherwise, without it, those tests skip, and under
# CI (CI=true) they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CPU_TORCH=2.13.0
CUDA_TORCH=2.14.1

venv() {  # venv DIR: DIR's python, after creating DIR unless it is a working environment already
    [ -x "$1/bin/python" ] && "$1/bin/python" -c "" 2>/dev/null || "$PYTHON" -m venv --clear "$1" >&2
    echo "$1/bin/python"
}

if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "scripts/test.sh: installing the distribution's chromium for the browser tests" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
            echo "scripts/test.sh: chromium could not be installed (above): the browser tests will skip, or fail under CI" >&2
    else
        echo "scripts/test.sh: no chromium: the browser tests will skip (fail under CI); install it with: sudo apt-get install chromium" >&2
    fi
fi

cpu=$(venv .venv)
# The distribution was called `envcheck` before 0.2; an old editable install would shadow the new one.
if "$cpu" -m pip show -q envcheck >/dev/null 2>&1; then
    "$cpu" -m pip uninstall -q -y envcheck
fi
"$cpu" -m pip install -q "torch==$CPU_TORCH" -e '.[test]'

if [ -z "${ENVCHECK_CUDA_TORCH_PYTHON:-}" ]; then
    cuda=$(venv .venv-cuda)
    "$cuda" -m pip install -q "torch==$CUDA_TORCH"
    ENVCHECK_CUDA_TORCH_PYTHON="$PWD/$cuda"
fi
export ENVCHECK_CUDA_TORCH_PYTHON

# Two workers (one where there is one CPU), each given whole test files: most tests wait on the commands
# they run, and on 2 cores the suite takes about four fifths of the time it does in one process. `-n 0`
# runs it in one.
exec "$cpu" -m pytest -q --numprocesses auto --maxprocesses 2 --dist loadfile "$@"
