#!/usr/bin/env bash
# The README's test command (`make test`) and CI's: static checks, unit tests,
# then the real-stack tests. The stack is started by the tests' fixtures when it
# is not already up, and stopped again afterwards if they started it.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> bridge unit tests (node)"
(cd infra/bridge && node --test lib/)
echo "==> pytest"
# The fault suite comes last: it stops, freezes and kills parts of the stack.
.venv/bin/python -m pytest tests/unit tests/stack tests/security tests/browser tests/faults \
    -p no:cacheprovider -ra --tb=short --durations=25 "$@"
# Per-user origins (README, "Security model") is a setting: prove it on a stack of
# its own in that mode. A stack left up by `make up` runs the default mode, so
# that case is reported, not silently passed.
echo "==> pytest, per-user origins (NBEMBED_STACK_PER_USER_ORIGINS=true)"
if .venv/bin/python -m infra status >/dev/null 2>&1; then
    echo "a stack is up (make up): stop it (make down) to run the per-user origins suite" >&2
    exit 1
fi
NBEMBED_STACK_PER_USER_ORIGINS=true exec .venv/bin/python -m pytest tests/security/test_origins.py \
    -p no:cacheprovider -ra --tb=short --durations=25 "$@"
