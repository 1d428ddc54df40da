"""Purge abuse, and invalidation by unsafe methods.

Only an allowed client with an unsafe method purges; the purge URL is decoded as a URL is; a
flood of unsafe requests does not grow the purge and tag tables without bound. A POST, PUT or
DELETE that succeeds makes the next GET of its URL go to the origin (RFC 9111 §4.4).
"""

import threading
import time

from harness import Conn, NGINX_HOSTS, case, describe, expect

PURGE = "purge abuse"
UNSAFE = "unsafe methods"
LONG = 60  # max-age of pages a purge case must find still cached


def cached_page(ctx, name="page"):
    """A page with a long lifetime, filled and confirmed a hit."""
    p = ctx.path(name)
    ctx.page(p, max_age=LONG)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    ctx.expect_page(ctx.get(p), p, "the second visitor (a hit)", 1)
    return p


def purge(ctx, method, query, source=None):
    r = ctx.host.purge(method, query, source)
    ctx.note("%s purge ?%s%s -> %s" % (method, query, " from " + source if source else "",
                                       r.brief()))
    return r


def expect_purged(ctx, p, n, what):
    r = ctx.get(p)
    ctx.expect_page(r, p, what, n)


@case(PURGE, obs=(7,))
def test_get_on_purge_location_does_not_purge(ctx):
    """A GET on the purge endpoint (a link or an image in a page an editor opens) purges nothing
    and is answered 405 Method Not Allowed; a POST purges."""
    p = cached_page(ctx)
    r = purge(ctx, "GET", ctx.host.purge_url_query(p))
    ctx.check(r.status == 405, "GET on the purge endpoint got %s, expected 405" % r.brief())
    expect_purged(ctx, p, 1, "after the GET on the purge endpoint, the page (still cached)")
    r = purge(ctx, "POST", ctx.host.purge_url_query(p))
    expect(r.status == 200, "POST on the purge endpoint got %s" % r.brief())
    expect_purged(ctx, p, 2, "after the POST purge, the page (refetched)")


@case(PURGE, hosts=NGINX_HOSTS, obs=(7,),
      why="the proxy's admin API has no access list: it listens on its own address")
def test_purge_from_denied_address_is_refused(ctx):
    """A purge from an address the purge location denies is refused (403) and purges nothing;
    the same purge from an allowed address works."""
    p = cached_page(ctx)
    r = purge(ctx, "POST", ctx.host.purge_url_query(p), source="127.0.0.2")
    ctx.check(r.status == 403, "a purge from 127.0.0.2 got %s, expected 403" % r.brief())
    expect_purged(ctx, p, 1, "after the denied purge, the page (still cached)")
    r = purge(ctx, "POST", ctx.host.purge_url_query(p))
    expect(r.status == 200, "a purge from 127.0.0.1 got %s" % r.brief())
    expect_purged(ctx, p, 2, "after the allowed purge, the page (refetched)")


@case(PURGE, obs=(7,))
def test_purge_url_with_encoded_plus(ctx):
    """`?url=` naming /c%2B%2B.php purges the page /c++.php: `%2B` is a plus, not a space."""
    p = cached_page(ctx, "c++")
    r = purge(ctx, "POST", ctx.host.purge_url_query(p))
    expect(r.status == 200, "the purge got %s" % r.brief())
    expect_purged(ctx, p, 2, "after purging %s, the page (refetched)" % p)


@case(PURGE, hosts=NGINX_HOSTS, obs=(7,),
      why="only the nginx hosts have a TLS listener (https pages)")
def test_purge_https_url(ctx):
    """`?url=https://host/path` purges the page visitors fetched over https."""
    expect(ctx.host.tls_port, "no TLS listener: making its certificate needs openssl")
    p = ctx.path()
    ctx.page(p, max_age=LONG)
    ctx.expect_page(ctx.get(p, tls=True), p, "the first https visitor", 1)
    ctx.expect_page(ctx.get(p, tls=True), p, "the second https visitor (a hit)", 1)
    r = purge(ctx, "POST", ctx.host.purge_url_query(p, scheme="https"))
    expect(r.status == 200, "the purge got %s" % r.brief())
    ctx.expect_page(ctx.get(p, tls=True), p, "after the https purge, the https page (refetched)",
                    2)


FLOOD = 10000
# How a status names the count of purge/tag records it keeps, and the bound it keeps them under
# (JSON keys, Prometheus series).
COUNT_FIELDS = ("tag_marks", "peakcache_tag_marks", "tags_used")
BOUND_FIELDS = ("max_tag_marks", "peakcache_max_tag_marks", "tag_slots")


def flood(ctx, p, count, threads=8, budget=60.0):
    """`count` POSTs to distinct URLs (`p?i=N`) over keep-alive connections, for at most
    `budget` seconds; their statuses."""
    statuses = {}
    lock = threading.Lock()
    deadline = time.time() + budget

    def worker(k):
        conn = None
        for i in range(k, count, threads):
            if time.time() > deadline:
                break
            if conn is None:
                conn = Conn(ctx.host.port)
            r = conn.exchange("POST", "%s?i=%d" % (p, i), [("Content-Type", "text/plain")],
                              b"x=1")
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.error or (r.header("Connection") or "").lower() == "close":
                conn.close()
                conn = None
        if conn:
            conn.close()

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return statuses


def field(counters, names):
    """(name, value) of the first of `names` the status has, or (None, None)."""
    for name in names:
        if name in counters:
            return name, counters[name]
    return None, None


@case(PURGE, obs=(6,), solo=True)
def test_unsafe_flood_does_not_grow_purge_tables(ctx):
    """10,000 POSTs to distinct URLs keep the purge/tag tables within the bound the status
    declares (it says how many records it holds and how many it keeps at most), and tag purges
    still work after them."""
    p = ctx.path("flood")
    ctx.define(p, unsafe_status=200)
    name, before = field(ctx.host.counters(), COUNT_FIELDS)
    statuses = flood(ctx, p, FLOOD)
    ctx.note("flood: statuses %s" % statuses)
    expect(sum(statuses.values()) == FLOOD, "only %d of the %d POSTs were answered within "
           "60 s: %s" % (sum(statuses.values()), FLOOD, statuses))
    ctx.check(statuses.get(200, 0) == FLOOD, "the flood's answers: %s" % statuses)
    counters = ctx.host.counters()
    name, after = field(counters, COUNT_FIELDS)
    bound_name, bound = field(counters, BOUND_FIELDS)
    if ctx.check(name is not None, "the status exposes no count of purge records or tags (needs "
                 "e.g. `tag_marks`); it has: %s" % ", ".join(sorted(counters)[:12])):
        if bound is None:
            ctx.check(False, "after %d POSTs %s went from %d to %d, and the status does not say "
                      "the bound it is kept under (needs e.g. `max_tag_marks`)"
                      % (FLOOD, name, before, after))
        else:
            ctx.check(after <= bound, "after %d POSTs %s is %d, over its bound %s=%d"
                      % (FLOOD, name, after, bound_name, bound))
    tagged = ctx.path("tagged")
    tag = "hostile-flood-tag"
    ctx.page(tagged, max_age=LONG, headers=[("Surrogate-Key", tag)])
    ctx.expect_page(ctx.get(tagged), tagged, "the tagged page", 1)
    ctx.expect_page(ctx.get(tagged), tagged, "the tagged page again (a hit)", 1)
    r = purge(ctx, "POST", "tag=" + tag)
    expect(r.status == 200, "the tag purge after the flood got %s" % r.brief())
    ctx.expect_page(ctx.get(tagged), tagged, "after the tag purge, the tagged page", 2)


def unsafe_request(ctx, method, status):
    """A cached page, then `method` on its URL answered `status`; returns (the page, answer)."""
    p = cached_page(ctx, method.lower())
    ctx.page(p, max_age=LONG, unsafe_status=status)
    body = b"title=hostile" if method != "DELETE" else b""
    r = ctx.request(method, p, [("Content-Type", "application/x-www-form-urlencoded")]
                    if body else [], body)
    recs = ctx.origin(p)
    expect(recs[-1].method == method and recs[-1].body == body,
           "the %s did not reach the origin with its body: %s; it got %s"
           % (method, describe(recs), r.brief()))
    ctx.check(r.status == status and (status == 204 or ("done %s" % method).encode() in r.body),
              "the %s got %s, expected the origin's %d" % (method, r.brief(), status))
    return p


@case(UNSAFE, obs=(7,))
def test_unsafe_methods_invalidate_the_url(ctx):
    """A POST, PUT or DELETE to a cached URL that gets a 2xx reaches the origin with its body,
    and the next GET of that URL goes to the origin (RFC 9111 §4.4)."""
    for method, status in (("POST", 200), ("PUT", 201), ("DELETE", 204)):
        p = unsafe_request(ctx, method, status)
        r = ctx.get(p)
        recs = ctx.origin(p)
        ctx.check(r.status == 200 and r.served_n() == 3,
                  "after a %s answered %d, the next GET got %s, expected a refetch (#3); %s"
                  % (method, status, r.brief(), describe(recs)))
