#!/usr/bin/env python3
"""The hostile suite: what a cache must do under hostile and everyday-but-odd traffic, run
against peakcache-proxy, nginx + proxy_pass and nginx + fastcgi_pass (PHP-FPM).

    python3 tests/hostile/run.py [--host proxy|nginx-proxy|nginx-fastcgi|all] [-k SUBSTR] [-v]

Prints one line per case and host (`ok`, or `FAIL` and what the origin received and what the
visitor got), then a table of every case on every host. Exit status 0 only when every selected
case passes on every selected host. Python 3 standard library only; see README.md.
"""

import argparse
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases  # noqa: E402,F401  (registers every case)
import harness  # noqa: E402
import hosts  # noqa: E402

# Cases of one host run side by side (each has its own paths), this many at a time.
JOBS = 12


def build_missing(selected):
    """Builds what the selected hosts need when it is missing, as the brief's README says."""
    steps = []
    if "proxy" in selected and not os.path.exists(hosts.PROXY):
        steps.append(["cargo", "build", "--release", "-p", "peakcache-proxy"])
    if set(selected) & set(harness.NGINX_HOSTS) and not os.path.exists(hosts.MODULE):
        steps.append(["make", "nginx-module"])
    for cmd in steps:
        print("hostile: building: " + " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=hosts.ROOT, check=True)


class Results:
    """Every outcome, printed as it comes."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.lock = threading.Lock()
        self.outcomes = {}  # (case name, host) -> (ok, reason, seconds)

    def add(self, host, case, ok, reason, seconds, ctx=None):
        with self.lock:
            self.outcomes[(case.name, host)] = (ok, reason, seconds)
            if ok:
                print("ok   %-13s %s (%.1f s)" % (host, case.name, seconds), flush=True)
            else:
                print("FAIL %-13s %s: %s" % (host, case.name, reason), flush=True)
                if self.verbose and ctx is not None:
                    for line in ctx.trace:
                        print("       | " + line)
                    for rec in ctx.origin_seen():
                        print("       | origin " + rec)
                    sys.stdout.flush()


def run_case(host, case, results):
    ctx = harness.Ctx(host, case)
    t0 = time.time()
    try:
        case.fn(ctx)
        reason = ctx.finish()
    except harness.Fail as e:
        reason = ctx.finish(e)
    except Exception as e:  # a harness error must say so, not pass for the host's fault
        tb = traceback.extract_tb(e.__traceback__)[-1]
        reason = "harness error: %s: %s (%s:%d)" % (type(e).__name__, e,
                                                    os.path.basename(tb.filename), tb.lineno)
    ok = reason is None
    results.add(host.name, case, ok, reason, time.time() - t0, ctx)


# Every host started, so that an interrupted run stops them all.
STARTED = []


def run_host(name, selected, workdir, results, phase, solo_lock):
    """Starts one host, runs its side-by-side cases, waits for the other hosts, then its solo
    cases one host at a time (load and timing they must own), and stops it."""
    naive = name in hosts.SELF_CHECK_HOSTS
    mine = [c for c in selected if naive or name in c.hosts]
    host = (hosts.SELF_CHECK_HOSTS if naive else hosts.HOSTS)[name](workdir)
    STARTED.append(host)
    try:
        host.start()
    except Exception as e:
        host.stop()  # what did start (an origin, PHP-FPM) must not outlive the run
        for c in mine:
            results.add(name, c, False, "host did not start: %s" % e, 0.0)
        phase.wait()
        return
    try:
        with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
            for f in [pool.submit(run_case, host, c, results) for c in mine if not c.solo]:
                f.result()
        phase.wait()
        for c in (c for c in mine if c.solo):
            with solo_lock:
                run_case(host, c, results)
    finally:
        host.stop()


def summary(selected, names, results):
    print("\n%-62s %s" % ("case", " ".join("%-13s" % n for n in names)))
    failed = 0
    for c in selected:
        cells = []
        for n in names:
            outcome = results.outcomes.get((c.name, n))
            if n not in c.hosts and n not in hosts.SELF_CHECK_HOSTS:
                cells.append("-")
            elif outcome is None:
                cells.append("?")
                failed += 1
            else:
                cells.append("ok" if outcome[0] else "FAIL")
                failed += not outcome[0]
        print("%-62s %s" % (c.name, " ".join("%-13s" % x for x in cells)))
    total = sum(1 for c in selected for n in names
                if n in c.hosts or n in hosts.SELF_CHECK_HOSTS)
    for n in names:
        mine = [o for (cn, h), o in results.outcomes.items() if h == n]
        print("%s: %d passed, %d failed" % (n, sum(o[0] for o in mine),
                                            sum(not o[0] for o in mine)))
    print("hostile: %d of %d passed" % (total - failed, total))
    return failed


def self_check(selected, results):
    """Every case must fail on at least one deliberately wrong cache; 0 when it does."""
    blind = [c.name for c in selected
             if all(results.outcomes.get((c.name, n), (False,))[0] for n in hosts.SELF_CHECK_HOSTS)]
    print("\nself-check: %d of %d cases caught a wrong cache" % (len(selected) - len(blind),
                                                               len(selected)))
    for name in blind:
        print("self-check: %s passed on every wrong cache: it cannot fail" % name)
    return len(blind)


def write_markdown(path, selected, names, results):
    """The case x host table with each failure's reason, for reports."""
    with open(path, "w") as f:
        f.write("| case | %s |\n|---|%s\n" % (" | ".join(names), "---|" * len(names)))
        for c in selected:
            cells = []
            for n in names:
                o = results.outcomes.get((c.name, n))
                cells.append("—" if n not in c.hosts else "?" if o is None
                             else "ok" if o[0] else "FAIL: " + o[1].replace("|", "\\|"))
            f.write("| `%s` | %s |\n" % (c.name, " | ".join(cells)))


def serve(names, workdir):
    """Starts the hosts and leaves them running for curl until interrupted; each has the page
    /demo/page.php (ETag, max-age=2, stale-while-revalidate=30) and its origin's log."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = []
    try:
        for name in names:
            host = hosts.HOSTS[name](workdir)
            started.append(host)
            host.start()
            host.origin.define("/demo/page.php", {
                "headers": [["Cache-Control", harness.cache_control()]], "etag": '"v1"',
                "body": harness.PAGE})
            print("%-13s http://127.0.0.1:%d/demo/page.php%s  origin log %s" % (
                name, host.port, "  https port %d" % host.tls_port if host.tls_port else "",
                host.origin.log_path), flush=True)
        print("hostile: serving until interrupted (specs: README.md, \"The origin\")", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for host in started:
            host.stop()


def list_cases(selected):
    """The README's tables: issue 10's observations to cases, then every case with its class,
    hosts and what a user relies on."""
    print("| issue 10 | cases |\n|---|---|")
    for obs in sorted({o for c in selected for o in c.observations}):
        print("| %d | %s |" % (obs, ", ".join("`%s`" % c.name for c in selected
                                             if obs in c.observations)))
    print()
    print("| case | class | hosts | issue 10 | what a user relies on |\n|---|---|---|---|---|")
    for c in selected:
        where = "all" if c.hosts == harness.ALL_HOSTS else ", ".join(c.hosts)
        if c.why:
            where += " (%s)" % c.why
        obs = ", ".join(str(o) for o in c.observations) or "—"
        print("| `%s` | %s | %s | %s | %s |" % (c.name, c.cls, where, obs, c.doc))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="all", choices=["all"] + list(hosts.HOSTS))
    ap.add_argument("--self-check", action="store_true",
                    help="run every case against naive.py's wrong caches: each must fail")
    ap.add_argument("-k", dest="substr", help="only cases whose name contains this")
    ap.add_argument("-v", action="store_true", help="a failing case's requests and records")
    ap.add_argument("--list", action="store_true", help="print the cases as a table, run none")
    ap.add_argument("--markdown", help="also write the results table to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--serve", action="store_true",
                    help="start the hosts and keep them running for curl, run no case")
    args = ap.parse_args()

    names = list(hosts.HOSTS) if args.host == "all" else [args.host]
    if args.self_check:
        names = list(hosts.SELF_CHECK_HOSTS)
    selected = [c for c in harness.CASES if not args.substr or args.substr in c.name]
    if args.list:
        list_cases(selected)
        return 0
    names = [n for n in names if n in hosts.SELF_CHECK_HOSTS or any(n in c.hosts for c in selected)]
    if not selected or not names:
        print("hostile: no case selected")
        return 2
    if not args.self_check:
        build_missing(names)

    workdir = tempfile.mkdtemp(prefix="peakcache-hostile-")
    if args.serve:
        serve(names, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    results = Results(args.v)
    phase = threading.Barrier(len(names))
    solo_lock = threading.Lock()
    t0 = time.time()
    threads = [threading.Thread(target=run_host, args=(n, selected, workdir, results, phase,
                                                         solo_lock), daemon=True) for n in names]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        print("hostile: interrupted; stopping the hosts", flush=True)
        for host in STARTED:
            host.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    failed = summary(selected, names, results)
    print("hostile: %.0f s" % (time.time() - t0))
    if args.self_check:
        failed = self_check(selected, results)
    if args.markdown:
        write_markdown(args.markdown, selected, names, results)
    if args.keep:
        print("hostile: logs in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
