# Two commands: `make run` (set up and serve) and `make test` (set up and run every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.PHONY: run test setup dev-setup browser nginx wrk clients clis migrate seed bench bench-quick bench-micro clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when a requirements file changed since the last install.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed

dev-setup: $(VENV)/.installed-dev

migrate: setup
	$(FLASK) db upgrade

seed: migrate
	$(FLASK) demo seed

run: seed
	$(FLASK) serve

# The end-to-end tests drive Debian's chromium (browser downloads are impossible here). Install it
# when we can (root with apt); without it those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "chromium is not installed: the browser tests will be skipped"
	@# A Chinese font, so Chinese pages are measured (phone widths) and shot with real glyphs, not boxes.
	@fc-list :lang=zh 2>/dev/null | grep -q . || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null) ; } || \
		echo "no Chinese font is installed (fonts-wqy-microhei): Chinese text will show as boxes"

# tests/test_nginx.py runs deploy/nginx.conf in Debian's nginx (the `nginx` package: in bookworm
# `nginx-light` is nginx plus the echo module). Installed like chromium; the package may start its
# own nginx on port 80 (where no policy-rc.d forbids it), so that one is stopped and disabled: the
# test runs nginx of its own on free ports.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) && \
		{ (systemctl disable --now nginx || service nginx stop || true) >/dev/null 2>&1; true; } ; } || \
		echo "nginx is not installed: tests/test_nginx.py will be skipped"

# Clients other than the official SDKs (the Vercel AI SDK, in Node) that tests point at the gateway,
# and axe-core, which the browser tests run in every page to check accessibility. Installed when
# node and npm exist, again only when the lock file changed; without them those tests skip and say why.
CLIENTS_STAMP := tests/clients/node_modules/.installed
$(CLIENTS_STAMP): tests/clients/package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/clients --no-audit --no-fund && touch $@; \
	else echo "node and npm are not installed: the Vercel AI SDK client tests will be skipped"; fi

clients: $(CLIENTS_STAMP)

# The Claude Code and Codex CLIs, pinned, which tests/clis/ runs end to end against the gateway
# (both ship native binaries inside their npm packages: about 650 MB). Installed like the clients.
CLIS_STAMP := tests/clis/node_modules/.installed
$(CLIS_STAMP): tests/clis/package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/clis --no-audit --no-fund && touch $@; \
	else echo "node and npm are not installed: the Claude Code and Codex CLI tests will be skipped"; fi

clis: $(CLIS_STAMP)

test: dev-setup browser nginx clients clis
	$(BIN)/ruff check --quiet --select F,E9 portal proxy tests bench migrations wsgi.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Full-page screenshots of every portal page (tests/e2e/pages.py's registry) at desktop and phone
# sizes, light and dark, English and Chinese, into screenshots/ (git-ignored), on a temporary database
# of demo-like data of their own. SCREENSHOTS_ARGS narrows them, e.g. "--lang en --size phone keys".
# Chinese needs a CJK font in the system (else chromium draws boxes): installed like chromium.
screenshots: dev-setup browser
	$(BIN)/python -m tests.screenshots $(SCREENSHOTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Benchmarks live here, never in the test suite: timings on a shared 2-core machine are noisy.
# `make bench` loads the gateway as production serves it (bench/load_bench.py: wrk, nginx, an SSE
# server, SQLite and Postgres) and writes its tables into docs/performance.md; `make bench-quick`
# (under two minutes, SQLite only) prints them. BENCH_ARGS adds options (`--only latency,streams`,
# `--json FILE`, `--seconds N`; see `python -m bench.load_bench --help`); WORKERS and SERVE_THREADS
# from the environment reach the gateway. `make bench-micro` runs the older, narrower benches.
# BENCH_DATABASE_URL names the Postgres server scratch databases are made on (and dropped);
# BENCH_POSTGRES_URL is its older name; empty: SQLite only.
BENCH_DATABASE_URL ?= $(or $(BENCH_POSTGRES_URL),postgresql://postgres@127.0.0.1:5432/postgres)

# wrk, the load generator (Debian package `wrk`), installed like nginx: with apt as root.
wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) ; } || \
		echo "wrk is not installed (Debian package wrk; install it as root): make bench cannot run without it"

bench: dev-setup wrk nginx
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.load_bench $(BENCH_ARGS)

bench-quick: dev-setup wrk nginx
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.load_bench --quick $(BENCH_ARGS)

bench-micro: dev-setup
	BENCH_POSTGRES_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.ledger_bench
	$(BIN)/python -m bench.proxy_bench
	BENCH_POSTGRES_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.dashboard_bench
	BENCH_POSTGRES_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m bench.ratelimit_bench
