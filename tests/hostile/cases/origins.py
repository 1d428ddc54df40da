"""Everyday origins: a peak on a cold page, an origin that fails, one with validators, and
nginx's own error and redirect pages."""

import math
import queue
import threading
import time

from harness import (NGINX_HOSTS, Conn, Fail, build_request, case, describe, expect,
                     is_conditional)

EVERYDAY = "everyday origins"
VALIDATORS = "origin with validators"
ERRORS = "error pages"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


def load(ctx, keys, rate, duration, workers=8):
    """GETs at `rate` per second over `keys` in turn for `duration` seconds, on time whatever
    a slow answer does; [(time sent, key, answer)]."""
    plan = queue.Queue()
    start = time.time() + 0.1
    for i in range(int(rate * duration)):
        plan.put((start + i / rate, keys[i % len(keys)]))
    out = []
    lock = threading.Lock()

    def worker():
        while True:
            try:
                at, p = plan.get_nowait()
            except queue.Empty:
                return
            wait = at - time.time()
            if wait > 0:
                time.sleep(wait)
            r = ctx.get(p)
            with lock:
                out.append((at, p, r))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(out, key=lambda x: x[0])


@case(VALIDATORS, obs=(4,), solo=True)
def test_validators_origin_one_request_per_key_per_expiry(ctx):
    """An origin with ETag and Last-Modified, `max-age=1, stale-while-revalidate=30`, answering
    conditionals with 304: at 50 requests/s over 4 keys for 4 s, each key costs at most one
    origin request per expiry; the refresh is conditional, and after its 304 the entry is fresh
    again (Age restarts) with its body unchanged."""
    keys = [ctx.path("k%d" % i) for i in range(4)]
    for p in keys:
        ctx.page(p, max_age=1, swr=30, sie=0, etag='"v1"', last_modified=LAST_MODIFIED)
        ctx.expect_page(ctx.get(p), p, "the first visitor of %s" % p, 1)
    duration = 4.0
    answers = load(ctx, keys, 50, duration)
    start, end = answers[0][0], answers[-1][0] + 0.1
    for p in keys:
        ctx.quiet(p, idle=0.3)
    allowed = math.ceil(duration / 1) + 1
    during = {p: [x for x in ctx.origin(p) if start <= x.t <= end] for p in keys}
    if not ctx.check(all(len(x) <= allowed for x in during.values()),
                     "origin requests per key during %.0f s at 50/s: %s (at most %d with "
                     "max-age=1), %d of them conditional; the origin sends no Date, as PHP behind "
                     "FastCGI does" % (
                         duration, ", ".join("%s %d" % (p.rsplit("/", 1)[-1], len(x))
                                             for p, x in during.items()), allowed,
                         sum(is_conditional(r) for x in during.values() for r in x))):
        return
    for p in keys:
        recs = ctx.origin(p)
        ctx.expect_one_per_expiry(p, max_age=1, what=p.rsplit("/", 1)[-1])
        revalidations = [x for x in recs if is_conditional(x)]
        ctx.check(revalidations, "%s: no conditional refresh reached the origin: %s"
                  % (p.rsplit("/", 1)[-1], describe(recs)))
        mine = [(at, r) for at, q, r in answers if q == p]
        for at, r in mine:
            expect(r.status == 200 and r.served_n() == 1 and len(r.body) > 20,
                   "%s: a visitor got %s, expected the unchanged page #1; %s"
                   % (p.rsplit("/", 1)[-1], r.brief(), describe(recs)))
        for rec in revalidations:
            after = [(at, r) for at, r in mine if rec.t + 0.3 < at < rec.t + 0.8]
            for at, r in after:
                age = r.header("Age")
                ctx.check(age is not None and age.isdigit() and int(age) <= 1,
                          "%s: %.2f s after the 304 to #%d a visitor got Age %s: the entry was "
                          "not renewed" % (p.rsplit("/", 1)[-1], at - rec.t, rec.n, age),
                          once=p + " age")


@case(ERRORS, hosts=NGINX_HOSTS, obs=(7,),
      why="X-Accel-Redirect is an nginx feature")
def test_accel_redirect_answer_is_not_stored_as_the_url(ctx):
    """An origin answer with `X-Accel-Redirect` to an internal page: each visitor gets the
    internal page nginx makes for it, never a stored copy of another visitor's."""
    p = ctx.path()
    ctx.define(p, body="the origin's own body\n",
               headers=[("Cache-Control", "max-age=60"),
                        ("X-Accel-Redirect", "/_hostile_internal/accel")])
    seen = []
    for i in range(3):
        r = ctx.get(p)
        expect(r.status == 200 and r.body.startswith(b"internal page /_hostile_internal/accel"),
               "visitor %d got %s, expected nginx's internal page" % (i + 1, r.brief()))
        if r.body in seen:
            raise Fail("visitor %d got a stored copy of visitor %d's internal page (%r); %s"
                       % (i + 1, seen.index(r.body) + 1, r.body.strip().decode(),
                          describe(ctx.origin(p))))
        seen.append(r.body)


@case(ERRORS, hosts=NGINX_HOSTS, obs=(7,),
      why="error_page is an nginx feature")
def test_error_page_is_not_stored_as_the_url(ctx):
    """While the origin drops connections, `error_page 502 =200` shows a maintenance page; it is
    never stored as the URL: once the origin is back, the next visitor gets the real page."""
    p = "/error-page" + ctx.path()
    ctx.define(p, fail="drop")
    r = ctx.get(p)
    expect(r.status == 200 and r.body.startswith(b"internal page /_hostile_internal/maint"),
           "the visitor while the origin drops got %s, expected the maintenance page"
           % r.brief())
    ctx.page(p)
    for i in range(3):
        again = ctx.get(p)
        ctx.expect_page(again, p, "visitor %d once the origin is back" % (i + 1), 2)


@case(VALIDATORS, obs=(4,))
def test_304_renews_the_entry_with_or_without_date(ctx):
    """A stale page's conditional refresh answered 304 makes it fresh again: Age restarts, the
    body stays, and no visitor starts another refresh before max-age has passed, whether the
    origin sends a Date (most servers) or not (PHP behind FastCGI)."""
    max_age = 3  # a Date counts whole seconds: the renewed entry may start up to 1 s old
    for date in (True, False):
        label = "origin %s Date" % ("with" if date else "without")
        p = ctx.path("date" if date else "no-date")
        ctx.page(p, max_age=max_age, etag='"v1"', last_modified=LAST_MODIFIED, date=date)
        ctx.expect_page(ctx.get(p), p, "%s: the first visitor" % label, 1)
        ctx.until_stale(p, max_age=max_age)
        ctx.get(p)
        recs = ctx.settle(p, 2)
        if not ctx.check(len(recs) == 2 and is_conditional(recs[1]),
                         "%s: the refresh was not conditional: %s" % (label, describe(recs))):
            continue
        for i in range(6):
            r = ctx.get(p)
            age = r.header("Age")
            ctx.check(r.status == 200 and r.served_n() == 1 and age is not None
                      and age.isdigit() and int(age) < max_age,
                      "%s: visitor %d after the 304 got %s, expected page #1, fresh (Age < %d)"
                      % (label, i + 1, r.brief(), max_age), once=label)
            time.sleep(0.2)
        recs = ctx.origin(p)
        ctx.check(len(recs) == 2, "%s: after the 304, %s" % (label, describe(recs)))


def burst(ctx, p, count, headers=()):
    """`count` visitors at the same moment; their answers."""
    answers = [None] * count
    gate = threading.Barrier(count)

    def one(i):
        gate.wait()
        answers[i] = ctx.get(p, headers)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


@case(EVERYDAY, obs=(5,))
def test_cold_burst_costs_one_origin_request(ctx):
    """30 visitors arriving together on a cold page of a slow origin (0.5 s) cost one origin
    request, whatever worker each lands on, and all get that answer."""
    p = ctx.path()
    ctx.page(p, delay=0.5)
    for i, r in enumerate(burst(ctx, p, 30)):
        ctx.expect_page(r, p, "visitor %d of the burst" % (i + 1), 1)
    recs = ctx.quiet(p)
    expect(len(recs) == 1, "the cold burst: %s" % describe(recs))


@case(EVERYDAY, obs=(5,))
def test_origin_down_every_visitor_gets_the_stale_page(ctx):
    """Once a page is past max-age and the origin answers 503 or drops the connection, every
    visitor, on every worker, gets the last good page (stale-if-error), and the origin is
    probed, not hammered."""
    for failure in ("503", "drop"):
        p = ctx.path(failure)
        ctx.page(p, max_age=1, swr=0, sie=60)
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        ctx.page(p, max_age=1, swr=0, sie=60, fail=failure)
        ctx.until_stale(p, max_age=1)
        for i, r in enumerate(burst(ctx, p, 10) + ctx.plain(p, 10)):
            ctx.expect_page(r, p, "with the origin failing (%s), visitor %d" % (failure, i + 1),
                            1)
        recs = ctx.quiet(p)
        ctx.check(len(recs) <= 3, "with the origin failing (%s), 20 visitors made %d origin "
                  "requests: %s" % (failure, len(recs) - 1, describe(recs)))


@case(EVERYDAY)
def test_visitors_who_give_up_never_cost_the_origin_more(ctx):
    """A slow page (the origin takes 0.6 s) whose first three visitors each give up after
    0.1 s, closing the connection before any answer: the fetch the first one started goes on,
    the origin is asked once, and the next visitor gets the stored page."""
    p = ctx.path()
    ctx.page(p, delay=0.6)
    head, _ = build_request("GET", p)
    for i in range(3):
        c = Conn(ctx.host.port)
        c.send(head)
        time.sleep(0.1)
        c.close()
        ctx.note("GET %s, visitor %d closed the connection after 0.1 s" % (p, i + 1), p)
    ctx.settle(p, 1, grace=0.8)
    ctx.expect_page(ctx.get(p), p, "the next visitor", 1)
    recs = ctx.quiet(p)
    ctx.check(len(recs) == 1, "three visitors who gave up and one who waited made %d origin "
              "requests: %s" % (len(recs), describe(recs)))


@case(EVERYDAY, obs=(6,))
def test_stale_if_error_serves_only_the_visitors_variant(ctx):
    """With the origin down, a page that varies on Accept-Encoding serves each visitor the stale
    copy of its own variant; a visitor whose variant was never stored never gets another's."""
    p = ctx.path()
    body = "page {path} n={n} enc={h:Accept-Encoding} " + "x" * 32 + "\n"
    ctx.page(p, max_age=1, swr=0, sie=60, headers=[("Vary", "Accept-Encoding")], body=body)
    stored = {}
    for enc in ("gzip", "br"):
        r = ctx.get(p, [("Accept-Encoding", enc)])
        ctx.expect_page(r, p, "the first %s visitor" % enc)
        stored[enc] = r.body
    ctx.page(p, max_age=1, swr=0, sie=60, headers=[("Vary", "Accept-Encoding")], body=body,
             fail="503")
    ctx.until_stale(p, max_age=1)
    for enc in ("gzip", "br", "deflate", "gzip", "br", "deflate"):
        r = ctx.get(p, [("Accept-Encoding", enc)])
        if enc in stored:
            ctx.check(r.status == 200 and r.body == stored[enc],
                      "origin down: the %s visitor got %s, expected its own stale variant"
                      % (enc, r.brief()))
        else:
            for variant, stale in stored.items():
                expect(r.body != stale, "origin down: the %s visitor got the stale %s variant "
                       "(%s)" % (enc, variant, r.brief()))
