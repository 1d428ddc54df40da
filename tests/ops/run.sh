#!/usr/bin/env bash
# `make test-ops`: puppeteer-core from the npm registry (the lock file's version; no browser
# download: Debian's chromium is used), then the operations tests under node's test runner:
# the live page in headless Chromium, snapshots and rollback through nginx, the Prometheus rules
# and the Grafana dashboard.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-concurrency=1 "$here"/*.test.mjs
