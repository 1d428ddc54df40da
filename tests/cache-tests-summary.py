#!/usr/bin/env python3
"""Summarises a run of the http-tests/cache-tests suite (https://cache-tests.fyi).

usage: cache-tests-summary.py DEFINITIONS.json RESULTS.json [--list-failures]

DEFINITIONS.json is the suite's test definitions (tests/*.mjs) exported by
tests/cache-tests.sh as [{"id": group, "tests": [{"id", "kind", "depends_on", ...}]}].
RESULTS.json is what the suite's CLI prints: {test id: result}.

How a result is read (the suite's own rules, test-engine/lib/results.mjs, which
cache-tests.fyi uses to draw each cell):
  - no entry for the test: not tested ("-");
  - a test whose `depends_on` tests did not all pass (pass or "yes"): dependency
    failure, whatever its own result (grey circle);
  - ["Setup", "retry"]: the cache retried (needs a manual look); ["Setup", msg]:
    setup failure (something between client and origin interfered);
  - false or ["AbortError", ...]: harness failure;
  - otherwise `true` is a pass and anything else (["Assertion", msg], ...) a
    failure, shown by kind: "required" (or no kind) pass / fail, "optimal" pass /
    optional fail, "check" yes / no (information, not conformance).

Headline numbers:
  - passes: tests shown as a pass (✅): result true, dependencies passing, kind
    required or optimal. This is how the issue's figures were counted (Varnish
    164, nginx 158 on the published results). Out of every test the CLI runs
    (the browser-only ones are skipped for a reverse proxy).
  - required: the same among the tests of kind required.
  - groups (stale, cdn-cache-control): pass or yes, as the group's cells on
    cache-tests.fyi (ATS 10 of 12 in `stale`, caddy 16 of 24 in
    `cdn-cache-control`).
Also printed: the raw count of `true` results (the suite's own "N passed"
total in the browser runner, which ignores dependencies) and the "yes" count.
"""

import json
import sys
from collections import Counter

GROUPS = ("stale", "cdn-cache-control")


def load(defs_path, results_path):
    with open(defs_path, encoding="utf-8") as f:
        suites = json.load(f)
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    tests = {}
    for suite in suites:
        for test in suite["tests"]:
            if test.get("browser_only"):
                continue  # never run against a reverse proxy
            tests[test["id"]] = (suite["id"], test)
    return tests, results


def classify(tests, results):
    """Test id -> one of: untested, dependency, retry, setup, harness, pass, fail,
    optional_fail, yes, no."""
    memo = {}

    def verdict(test_id):
        if test_id in memo:
            return memo[test_id]
        memo[test_id] = "dependency"  # guards against a dependency cycle
        _, test = tests[test_id]
        result = results.get(test_id)
        if result is None:
            v = "untested"
        elif any(
            dep not in tests or verdict(dep) not in ("pass", "yes")
            for dep in test.get("depends_on") or []
        ):
            v = "dependency"
        elif isinstance(result, list) and result and result[0] == "Setup":
            v = "retry" if len(result) > 1 and result[1] == "retry" else "setup"
        elif result is False or (isinstance(result, list) and result and result[0] == "AbortError"):
            v = "harness"
        else:
            kind = test.get("kind") or "required"
            ok = result is True
            v = {
                "required": ("pass", "fail"),
                "optimal": ("pass", "optional_fail"),
                "check": ("yes", "no"),
            }[kind][0 if ok else 1]
        memo[test_id] = v
        return v

    return {test_id: verdict(test_id) for test_id in tests}


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    tests, results = load(argv[1], argv[2])
    verdicts = classify(tests, results)
    kinds = {tid: (t.get("kind") or "required") for tid, (_, t) in tests.items()}
    required = [tid for tid in tests if kinds[tid] == "required"]
    counts = Counter(verdicts.values())
    raw_true = sum(1 for tid in tests if results.get(tid) is True)

    print(f"cache-tests: {len(results)} results for {len(tests)} tests")
    print(f"  passes:   {counts['pass']} of {len(tests)}  (plus {counts['yes']} 'yes' of "
          f"{sum(1 for k in kinds.values() if k == 'check')} checks; raw true results: {raw_true})")
    print(f"  required: {sum(1 for tid in required if verdicts[tid] == 'pass')} of {len(required)}")
    for group in GROUPS:
        ids = [tid for tid, (g, _) in tests.items() if g == group]
        ok = sum(1 for tid in ids if verdicts[tid] in ("pass", "yes"))
        raw = sum(1 for tid in ids if results.get(tid) is True)
        print(f"  group {group}: {ok} of {len(ids)}  (raw true: {raw})")
    print("  verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if "--list-failures" in argv:
        for tid in tests:
            v = verdicts[tid]
            if v in ("pass", "yes"):
                continue
            detail = results.get(tid)
            detail = detail[1] if isinstance(detail, list) and len(detail) > 1 else detail
            print(f"  {v:13} {kinds[tid]:8} {tests[tid][0]:18} {tid}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
