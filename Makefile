# The two commands: `make run` and `make test`. Both set everything up by themselves.
.PHONY: run test setup check lint bench conformance

PY := .venv/bin/python

setup:
	@bin/bootstrap

# bin/run starts Redis, then migrates, collects static files and creates the demo data,
# then starts the other roles; Ctrl-C stops them, and Redis last.
run: setup
	@exec $(PY) bin/run

# The whole suite against real Redis, Daphne, Celery and Chromium processes that the
# tests start and stop themselves (tests/services.py); then the database suites again on
# a throwaway PostgreSQL (skipped when PYTEST_ARGS narrows the run; PG_TESTS= to skip).
# The database suites: services and group commit, consumers, history, the live two-process
# tests, the faults, search and attachments (not the parsing, markup and admin-page suites,
# whose queries are the same on both engines).
PG_CHAT := services services_dm services_processes group_commit consumers consumers_dm history_api \
	selectors views_dm live_two_servers join_resume_processes
PG_TESTS ?= $(foreach m,$(PG_CHAT),tests/chat/test_$(m).py) tests/reactions tests/receipts tests/attachments \
	tests/search tests/reliability tests/realtime/test_settings.py tests/realtime/test_auth.py tests/realtime/test_rows.py

test:
	@bin/bootstrap --test
	@.venv/bin/lint-imports --no-cache
	@$(PY) -m pytest --durations=20 $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ] && [ -n "$(PG_TESTS)" ]; then \
		echo "==> The database suites on PostgreSQL: $(PG_TESTS)"; \
		TEST_DATABASE=postgres $(PY) -m pytest $(PG_TESTS); \
	fi

# Daphne's and autobahn's own test suites, from their pinned sdists, against the project's
# patches of their internals (bin/conformance, realtime/accel.py).
conformance: setup
	@$(PY) bin/conformance

# ruff, and the architecture contracts of pyproject.toml ([tool.importlinter]): the core
# imports no app, and the chat's layers call only down.
lint: setup
	@.venv/bin/ruff check .
	@.venv/bin/lint-imports --no-cache

# The benchmarks (bench/README.md): about 65 minutes; results in bench/results/.
# S6 (100,000 sockets) runs on its own: the open-file limit per process (20,000 here, not
# raisable without CAP_SYS_RESOURCE) needs the project on six processes and six load ones.
bench: setup
	@$(PY) bench/fanout/run.py --scenarios S0,S1,S2,S3,S4,S3B
	@$(PY) bench/fanout/run.py --scenarios S6 --servers project,bare --project-env WEB_CONCURRENCY=6 \
		--load-procs 6 --budget 3600 --json bench/results/fanout-s6.json
	@# reconnect.py exits 1 when its target is not met (fanout/run.py reports its own and goes on):
	@# the rest of the benchmarks still run.
	-@$(PY) bench/reconnect.py
	@$(PY) bench/push_latency.py
