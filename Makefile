# The two commands of a fresh machine: `make demo` and `make test`.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-cluster run run-cluster certs cluster-packages statements-packages test test-fast test-alone test-broken-banks bench lab clean test-packages

install: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	touch $@

.env:
	cp .env.example .env

# The whole system; the client process runs the demo, then honcho stops everything with the client's status,
# and the client's verdict is the last thing on screen.
demo: install .env
	@rm -f var/demo-verdict.txt
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" honcho start; status=$$?; echo; \
	cat var/demo-verdict.txt 2>/dev/null || echo "demo FAILED: the client gave no verdict (see above)"; exit $$status

# The cluster shape: three etcd members, two PostgreSQL members under Patroni (the statement store), two data
# servers, three business servers and the nginx edge, TLS on every hop (make certs). demo-cluster runs the tour and check through the edge, run-cluster leaves it up.
cluster-packages:
	command -v etcd >/dev/null && command -v nginx >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq etcd-server etcd-client nginx)

# The statement store's PostgreSQL, and Patroni (pinned) in a virtualenv of Debian's Python that the postgres user
# can read wherever the project lives (ops/patroni.py).
PATRONI_VENV := /opt/bank-patroni-4.1.5
statements-packages: $(PATRONI_VENV)/.installed

$(PATRONI_VENV)/.installed: ops/patroni-requirements.txt
	ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 && /usr/bin/python3 -c "import ensurepip, venv" || \
		(apt-get update -qq && apt-get install -y -qq postgresql-15 python3-venv)
	/usr/bin/python3 -m venv $(PATRONI_VENV)
	$(PATRONI_VENV)/bin/pip install --quiet --disable-pip-version-check -r ops/patroni-requirements.txt
	touch $@

# A local CA and every role's certificate in var/tls/ (kept if there; TLS_HOSTS names the hosts).
certs: install
	$(PYTHON) -m ops.certs

demo-cluster: install .env cluster-packages statements-packages certs
	@rm -rf var/etcd var/demo-verdict.txt /var/tmp/bank-cluster-pg && mkdir -p -m 700 var/etcd
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" honcho -f Procfile.cluster start; status=$$?; echo; \
	cat var/demo-verdict.txt 2>/dev/null || echo "demo FAILED: the client gave no verdict (see above)"; exit $$status

run-cluster: install .env cluster-packages statements-packages certs
	@rm -rf var/etcd /var/tmp/bank-cluster-pg && mkdir -p -m 700 var/etcd
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" honcho -f Procfile.cluster start etcd1 etcd2 etcd3 pg1 pg2 data1 data2 \
		business1 business2 business3 edge

# The servers alone, left running for Postman and curl (Ctrl-C stops them).
run: install .env
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" honcho start data business1 business2 business3

# newman, for the Postman collection, pinned in package.json and package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests run for real (as the benchmark installs wrk): Chromium and its driver for the
# dashboard's browser test, etcd for the cluster the etcd store is tested on, nftables for the lab's partitions,
# nginx for the edge.
test-packages:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v etcd >/dev/null && \
		command -v nft >/dev/null && command -v nginx >/dev/null || (apt-get update -qq && \
		apt-get install -y -qq chromium chromium-driver etcd-server etcd-client nftables nginx)

# ruff first (seconds), then every test on two pytest-xdist workers: the tests held to bounds in seconds one after
# another on one of them (the "timed" group, tests/e2e/conftest.py), everything else on the other.
test: install node_modules/.installed test-packages statements-packages
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest -n 2 --dist loadgroup -m "not alone" --durations=25

# The tests that compare the bank's rate across a fault, each three times in a row with nothing else running.
test-alone: install test-packages statements-packages
	for run in 1 2 3; do $(PYTHON) -m pytest -q -m alone || exit 1; done

# The fault, soak and partition tests against each broken bank (docs/testing.md): each must fail every test that
# its broken bank reaches.
test-broken-banks: install node_modules/.installed test-packages statements-packages
	$(PYTHON) -m harness.broken_banks refuse-always
	$(PYTHON) -m harness.broken_banks refuse-after-unavailable
	$(PYTHON) -m harness.broken_banks refuse-3s-after-unavailable

# The tests that need no etcd, nginx or browser, in well under a minute: tests/conftest.py marks the others
# (e2e: all of tests/e2e; needs_etcd: the etcd store's, the etcd cluster's).
test-fast: install
	$(PYTHON) -m pytest -q -m "not needs_etcd and not e2e" tests/unit tests/integration

# The benchmark (wrk, etcd and PostgreSQL for its peer from Debian; the chart from matplotlib, py-spy; Patroni for
# the soak with the statement store); results in bench/results/.
bench: install statements-packages
	command -v wrk >/dev/null && command -v etcd >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq wrk etcd-server etcd-client postgresql)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PYTHON) -m bench.run

# The partition lab (Linux, as root): eleven simulated hosts, the nemesis, the checker; results in lab/results/.
lab: install statements-packages
	command -v nft >/dev/null && command -v etcd >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq nftables etcd-server etcd-client)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PYTHON) -m lab

clean:
	rm -rf $(VENV) var .pytest_cache node_modules /var/tmp/bank-cluster-pg
