# Entry points a newcomer can paste: `make demo` and `make test`.
# Everything Python goes into a virtual environment ($(VENV)), created with the
# system interpreter: Debian's python3 refuses `pip install` outside one
# (externally-managed-environment), and nothing here needs activating by hand.
PYTHON ?= python3
VENV ?= .venv
VPY = $(VENV)/bin/python
APT_PACKAGES = git docker-registry buildah apache2-utils python3-venv bubblewrap

.PHONY: install system-packages demo demo-cluster test docs bench cluster-build cluster backlog-cli

system-packages:
	@missing=""; for tool in git docker-registry buildah htpasswd bwrap; do \
	    command -v $$tool >/dev/null || missing=yes; done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing=yes; \
	if [ -n "$$missing" ]; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VPY):
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# pip runs only when pyproject.toml is newer than the stamp of the last install, so a
# second `make demo` starts the demo at once.
STAMP = $(VENV)/.installed

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test,docs]'
	touch $(STAMP)

install: system-packages $(STAMP)

demo: install
	$(VPY) demo/run.py

# Tasks against the real kube-apiserver, kwok and Flux of the cluster tier; the stack
# must be built first (`make cluster-build`), and is stopped when the demo ends.
demo-cluster: install
	$(VPY) demo/run_cluster.py

test: install
	$(VPY) -m pytest tests -n auto -m "not slow and not cluster" && $(VPY) -m pytest tests -m "slow or cluster"

# The documentation site, built strictly into a fresh temporary directory (never
# into the checkout); the hook in docs/hooks imports the package for its tables.
docs: $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[docs]'
	@site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$site" \
	    && echo "docs built in $$site (open $$site/index.html)"

bench: install
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(VPY) benchmarks/run.py

# The local Kubernetes + Flux stack for the `cluster` tests, built from the Go module
# proxy into ~/.cache/pytest-infratask/cluster (25-45 min cold, seconds when warm).
cluster-build:
	bash demo/kubestack/build.sh

# Build (or reuse) and start the stack on 127.0.0.1 for manual use; Ctrl-C stops it.
cluster: install cluster-build
	PYTHONPATH=demo $(VPY) -m kubestack --no-build

# The Backlog.md CLI for the `backlog` tests (npm), into ~/.cache/pytest-infratask/backlog
# (seconds; the version is pinned in tests/backlogcli/version.env).
backlog-cli:
	bash tests/backlogcli/install.sh
