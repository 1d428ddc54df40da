# peakcache: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

# Debian packages the tests and benches need, as `command:package` pairs; `make deps` installs
# only the missing ones, so it is quick when nothing is.
DEPS :=

.PHONY: all test lint unit deps bench replay demo clean

all: test

deps:
	@missing=""; for pair in $(DEPS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: nothing to install"; fi

test: deps lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

bench:
	$(CARGO) bench -p peakcache-benches

replay:
	bash benches/replay-all.sh

clean:
	$(CARGO) clean
