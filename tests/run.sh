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
exec .venv/bin/python -m pytest tests/unit tests/stack tests/security tests/browser -p no:cacheprovider -ra "$@"
