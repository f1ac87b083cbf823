# The two commands a newcomer needs: `make up` and `make test`.
.PHONY: up test down restart status install lint typecheck unit bench schemas

PY := .venv/bin/python

install:  ## install everything (idempotent, cached)
	@bash infra/install.sh

up: install  ## install, start the whole stack and print its URLs
	@$(PY) -m infra up

down:  ## stop the whole stack; leaves no process and no port behind
	@$(PY) -m infra down

restart:  ## restart the three services after a code change
	@$(PY) -m infra restart

status:  ## which components answer
	@$(PY) -m infra status

test: install  ## lint, type-check and run every test against the real stack
	@bash tests/run.sh

unit: install  ## only the unit tests (no stack needed)
	@$(PY) -m pytest tests/unit -q

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:
	@.venv/bin/mypy

schemas:  ## export the event contracts (JSON Schema) and the AsyncAPI document into schemas/json
	@$(PY) -m schemas schemas/json
	@$(PY) -m services.asyncapi schemas/json/asyncapi.json
