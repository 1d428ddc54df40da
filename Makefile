# peakcache: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

# Debian packages the tests and benches need, as `command:package` pairs (or `/path:package`
# for a package that installs no command); `make deps` installs only the missing ones, so it is
# quick when nothing is.
DEPS := gcc:gcc nm:binutils valgrind:valgrind curl:curl nginx:nginx wrk:wrk \
	/usr/share/nginx/src/configure:nginx-dev \
	phpize8.2:php8.2-dev php8.2:php8.2-cli php-fpm8.2:php8.2-fpm \
	/usr/lib/php/20220829/apcu.so:php8.2-apcu /usr/share/php/PhpParser/autoload.php:php-parser \
	redis-server:redis-server openssl:openssl ss:iproute2 h2load:nghttp2-client \
	dpkg-buildpackage:dpkg-dev dh:debhelper dh_php:dh-php lintian:lintian pkg-config:pkg-config \
	pecl:php-pear chromium:chromium promtool:prometheus node:nodejs npm:npm

.PHONY: all test lint unit test-loom deps bench replay demo clean ffi header-check test-c conformance \
	php-ext test-php bench-php nginx-module test-nginx test-nginx-asan test-nginx-asan-module bench-nginx bench-shm \
	bench-cluster test-hostile package test-package test-cluster test-ops

all: test

# Cargo's target directory (CARGO_TARGET_DIR or build.target-dir honoured), for the binaries the
# test scripts run.
CARGO_TARGET = $(shell $(CARGO) metadata --format-version 1 --no-deps \
	| sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

deps:
	@missing=""; for pair in $(DEPS); do what=$${pair%%:*}; pkg=$${pair##*:}; \
	  case $$what in /*) [ -e $$what ] ;; *) command -v $$what >/dev/null 2>&1 ;; esac \
	    || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: nothing to install"; fi

test: deps lint unit test-loom header-check test-c test-php test-nginx test-nginx-asan-module test-hostile test-package \
	test-cluster test-ops

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# The model checks of the tag purge protocol (crates/peakcache/src/tags.rs): every interleaving
# of purges, folds and lookups under loom. A tree of its own (target/loom), so the normal build
# is not redone; under a minute cold, about ten seconds of checking.
test-loom:
	RUSTFLAGS="--cfg loom" $(CARGO) test -p peakcache --release --lib --target-dir target/loom loom

# The C library as hosts link it: libpeakcache.a / libpeakcache.so(.0) next to Cargo's artifacts,
# in Cargo's target directory as Cargo reports it (CARGO_TARGET_DIR or build.target-dir if set).
ffi:
	$(CARGO) build --release -p peakcache-ffi --lib
	@out="$(CARGO_TARGET)/release" && set -x && \
	  cp "$$out/libpeakcache_ffi.a" "$$out/libpeakcache.a" && \
	  cp "$$out/libpeakcache_ffi.so" "$$out/libpeakcache.so.0" && \
	  ln -sf libpeakcache.so.0 "$$out/libpeakcache.so"

# Fails when include/peakcache.h differs from what the pinned cbindgen generates.
header-check:
	crates/peakcache-ffi/gen-header.sh --check

# The C tests: plain, under ASan+UBSan, under valgrind; the README's example; exported symbols.
test-c:
	tests/c/run.sh

# The Debian packages (libpeakcache0, libpeakcache-dev, libnginx-mod-http-peakcache,
# php8.2-peakcache) built with debhelper from a copy of the tree, checked with lintian:
# target/deb/*.deb. About a minute once the copy's target/ is warm.
package: deps
	CARGO="$(CARGO)" packaging/build-debs.sh

# The packages installed on this machine (root) and used as the README says (system nginx, php,
# pkg-config, pecl), then removed and purged; the Rust crates' publish dry runs, docs, examples.
test-package: deps
	CARGO="$(CARGO)" tests/package/run.sh

# A campaign peak against a slow origin, straight and through peakcache-proxy (under a minute).
demo: deps
	CARGO="$(CARGO)" bash scripts/demo.sh

# The PHP extension (bindings/php): built with phpize against Debian's php8.2-dev, its .phpt
# suite under run-tests.php, and PHP-FPM behind nginx end to end.
php-ext: ffi
	bindings/php/build.sh --no-ffi

test-php: ffi
	bindings/php/test.sh --no-ffi

# peakcache against APCu, fetch/store/remember, same run.
bench-php: ffi
	bindings/php/build.sh --no-ffi && benches/php/run.sh 0.5 --no-build

# The nginx dynamic module (bindings/nginx), built against the installed nginx's sources
# (Debian's nginx-dev), tested with a real nginx and a counting origin on loopback.
nginx-module: ffi
	bindings/nginx/build.sh

test-nginx: nginx-module
	bindings/nginx/run-tests.sh

# The same tests with the module built under AddressSanitizer, loaded by the installed nginx
# with the ASan runtime preloaded (about a minute): any report fails.
test-nginx-asan-module: ffi
	bindings/nginx/run-tests.sh --asan

# The nginx tests again with nginx and the module built under AddressSanitizer (needs full
# nginx sources in NGINX_FULL_SRC: Debian's nginx-dev ships headers only).
test-nginx-asan: ffi
	bindings/nginx/build-asan.sh

# The hostile suite (tests/hostile): hostile and everyday-but-odd traffic against
# peakcache-proxy, nginx + proxy_pass and nginx + fastcgi_pass to PHP-FPM (about a minute).
test-hostile: deps nginx-module
	$(CARGO) build --release -p peakcache-proxy
	PEAKCACHE_PROXY=$(CARGO_TARGET)/release/peakcache-proxy python3 tests/hostile/run.py

# Two nginx hosts (each with its host agent as shield) and two PHP pools (each with its agent),
# on a redis-server and a counting origin of their own: a cold page costs one origin request
# for both nginx hosts, a purge through one nginx's purge location or one pool's purgeTag()
# reaches the other host (tests/cluster/run.py, about 10 s).
test-cluster: nginx-module php-ext
	$(CARGO) build -p peakcache-proxy
	PEAKCACHE_PROXY=$(CARGO_TARGET)/debug/peakcache-proxy python3 tests/cluster/run.py

# Operations (tests/ops, about a minute): the live status page in headless Chromium (Debian's,
# driven by puppeteer-core from npm) against nginx under traffic with a failing origin (writes
# target/ops/status-page.png), snapshots and rollback through nginx, the Prometheus rules under
# promtool and the Grafana dashboard against the exporters' metric names.
test-ops: deps nginx-module
	$(CARGO) build --release -p peakcache-proxy
	PEAKCACHE_PROXY=$(CARGO_TARGET)/release/peakcache-proxy tests/ops/run.sh

# Hot hits, Zipf, cold spike, expiry under load, origin down: nginx + peakcache against
# proxy_cache and `return 200`, same run, configured as the README says (worker_processes auto,
# the default zone) against an origin with ETags that answers 304s; about 3 minutes; writes
# target/nginx-bench/summary.md.
bench-nginx: nginx-module
	python3 benches/nginx/bench.py

# The shared-memory tier: a 1 KiB hit vs the in-process cache, and hit ratios on the traces.
bench-shm:
	cargo bench -p peakcache-shm --bench shm

# The public HTTP caching test suite (http-tests/cache-tests) against peakcache-proxy and against
# nginx with the module, both as their READMEs configure them, when the suite is present
# (CACHE_TESTS_DIR, default /tmp/cache-tests; see tests/cache-tests.sh).
conformance: nginx-module
	PEAKCACHE_PROXY=$(CARGO_TARGET)/release/peakcache-proxy bash tests/cache-tests.sh

# Three peakcache-proxy hosts in one cluster on a redis-server of their own, one counting origin,
# loopback: purge visible on all hosts (p50/p99 over 1,000 purges), second-level hit latency
# (1 KiB, 64 KiB) against a local hit and an origin fetch, origin requests for a cold page with
# and without the cluster; about a minute; writes target/cluster-bench/summary.md.
bench-cluster: deps
	$(CARGO) bench -p peakcache-proxy --bench cluster

bench:
	$(CARGO) bench -p peakcache-benches

replay:
	bash benches/replay-all.sh

clean:
	$(CARGO) clean
