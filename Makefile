# Docvault: `make run` serves the product on its embedded defaults, `make test` passes the suite,
# `make serve` runs it in production (gunicorn, WhiteNoise) from the environment's settings.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_PACKAGES := libmagic1
TEST_PACKAGES := libmagic1 poppler-utils libnss3-tools chromium libharfbuzz-subset0 postgresql-15

.PHONY: run test serve lint bench venv dev-venv system-run system-test

run: system-run venv .env
	$(BIN)/python scripts/dev_env.py .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: system-test dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Production (docs/DEPLOYMENT.md): settings come from the environment, never from the defaults
# `make run` writes. MIGRATE=1 applies migrations first (the release step, or one server); otherwise
# an unapplied migration stops the start rather than serving against an old schema.
serve: export DJANGO_SERVE_STATIC ?= 1
serve: system-run venv
	$(BIN)/python manage.py check --deploy
	$(BIN)/python manage.py migrate $(if $(filter 1,$(MIGRATE)),--noinput,--check)
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	exec $(BIN)/gunicorn --config config/gunicorn.py

lint: dev-venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: system-test dev-venv
	$(BIN)/python -m bench $(BENCH_ARGS)

system-run:
	@scripts/system-packages.sh $(RUN_PACKAGES)

system-test:
	@scripts/system-packages.sh $(TEST_PACKAGES)

venv: $(VENV)/.runtime-installed
dev-venv: $(VENV)/.dev-installed

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

.env: | $(VENV)/bin/python
	$(BIN)/python scripts/dev_env.py .env
