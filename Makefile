# The two commands of a fresh machine: `make demo` and `make test`.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo run test clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	touch $@

.env:
	cp .env.example .env

var:
	mkdir -p var

demo: install .env var
	$(VENV)/bin/honcho start

run: install .env var
	$(VENV)/bin/honcho start

test: install
	$(PYTHON) -m pytest

clean:
	rm -rf $(VENV) var .pytest_cache
