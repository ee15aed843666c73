# Entry points a newcomer can paste: `make demo` and `make test`.
PYTHON ?= python3
APT_PACKAGES = git docker-registry buildah apache2-utils

.PHONY: install system-packages demo test bench cluster-build cluster

system-packages:
	@missing=""; for tool in git docker-registry buildah htpasswd; do \
	    command -v $$tool >/dev/null || missing=yes; done; \
	if [ -n "$$missing" ]; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

install: system-packages
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

demo: install
	$(PYTHON) demo/run.py

test: install
	$(PYTHON) -m pytest tests

bench: install
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PYTHON) benchmarks/run.py

# The local Kubernetes + Flux stack for the `cluster` tests, built from the Go module
# proxy into ~/.cache/pytest-infratask/cluster (25-45 min cold, seconds when warm).
cluster-build:
	bash tests/kubestack/build.sh

# Build (or reuse) and start the stack on 127.0.0.1 for manual use; Ctrl-C stops it.
cluster: install cluster-build
	PYTHONPATH=tests $(PYTHON) -m kubestack --no-build
