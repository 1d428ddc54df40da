"""Denial of cache through request headers: no visitor can switch the cache off for others.

Request directives (no-store, no-cache, max-age=0, Pragma) are ignored for shared entries, as
Varnish, Fastly and Cloudflare do: that visitor is served like anyone else. A visitor the cache
must not serve from a shared entry (Authorization, a logged-in cookie) is passed to the origin
alone; the entry, its refresh and its waiters are untouched.
"""

import threading
import time

from harness import case, describe, expect

DENIAL = "denial of cache"


def served_like_anyone(ctx, header, value, state):
    """The shared checks of a request directive at `state` (miss, fresh or stale)."""
    p = ctx.path()
    ctx.page(p)
    who = "the `%s: %s` visitor at %s" % (header, value, state)
    if state == "miss":
        ctx.expect_page(ctx.get(p, [(header, value)]), p, who, 1)
    else:
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        if state == "stale":
            ctx.until_stale(p)
        r = ctx.get(p, [(header, value)])
        ctx.expect_page(r, p, who, 1 if state == "fresh" else None)
        if state == "stale":
            ctx.settle(p, 2)
    for rec in ctx.origin(p):
        ctx.check(value not in rec.values(header) and not rec.has("Pragma"),
                  "a fill carried the visitor's %s: %s: %s" % (header, value, rec.brief()))
    followers_from_cache(ctx, p, 20)
    recs = ctx.origin(p)
    expected = 1 if state != "stale" else 2
    expect(len(recs) >= expected, "%s: %s, expected %d fill(s)" % (who, describe(recs), expected))
    ctx.expect_one_per_expiry(p)


def followers_from_cache(ctx, p, count, passed=()):
    """The next `count` plain visitors all get the page of the last fill from the cache: the
    origin count does not move. `passed` are records that were one visitor's own pass."""
    before = ctx.origin(p)
    rs = ctx.plain(p, count)
    after = ctx.origin(p)
    fills = [r for r in before if r.n not in {x.n for x in passed}]
    expect(fills, "no fill reached the origin: %s" % describe(after))
    for i, r in enumerate(rs):
        expect(r.status == 200 and r.served_n() == fills[-1].n and r.body.startswith(b"page "),
               "plain visitor %d of %d got %s, expected answer #%d from the cache; %s"
               % (i + 1, count, r.brief(), fills[-1].n, describe(after)))
    expect(len(after) == len(before), "the %d plain visitors made %d origin requests: %s"
           % (count, len(after) - len(before), describe(after)))


def passed_alone(ctx, header, value, state):
    """Visitors the cache must not serve from the shared entry (Authorization, a logged-in
    cookie) at `state`: each passed to the origin alone, nothing stored from them, and the
    entry, its refresh and the following anonymous visitors untouched. In four trials at once,
    each with two such visitors: with two workers, each may land on either one."""
    ctx.trials(lambda i: passed_alone_once(ctx, header, "%s%d-" % (value, i), state, i), 4)


def passed_alone_once(ctx, header, value, state, trial, visitors=2):
    """One trial of passed_alone() on its own path."""
    p = ctx.path("trial-%d" % trial)
    ctx.page(p, body="page {path} n={n} who={h:%s} " % header + "x" * 32 + "\n")
    if state != "miss":
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        if state == "stale":
            ctx.until_stale(p)
    values = ["%s%d" % (value, i) for i in range(visitors)]
    answers = [ctx.get(p, [(header, v)]) for v in values]
    recs = ctx.quiet(p)
    for i, (v, r) in enumerate(zip(values, answers)):
        mine = [x for x in recs if v in x.values(header)]
        who = "trial %d: the `%s` visitor %d of %d at %s" % (trial + 1, header, i + 1, visitors,
                                                               state)
        expect(len(mine) == 1, "%s was not passed to the origin with its %s (%s); it got %s"
               % (who, header, describe(recs), r.brief()))
        expect(r.status == 200 and ("who=" + v + " ").encode() in r.body,
               "%s got %s, expected the origin's answer #%d to it" % (who, r.brief(), mine[0].n))
    passed = [x for x in recs if x.has(header)]
    if state in ("miss", "stale"):
        # the first anonymous visitor fills, or takes the refresh the passed ones left alone
        first = ctx.get(p)
        expect(first.status == 200 and value.encode() not in first.body,
               "trial %d: the first anonymous visitor after them got %s" % (trial + 1,
                                                                              first.brief()))
        ctx.quiet(p)
    followers_from_cache(ctx, p, 20, passed=passed)
    recs = ctx.origin(p)
    others = [x for x in recs if x not in passed]
    for rec in others:
        expect(not rec.has(header), "a fill or refresh carried %s: %s" % (header, rec.brief()))
    ctx.expect_one_per_expiry(p, records=others, what="fills and refreshes")


@case(DENIAL, obs=(1,))
def test_no_store_at_miss_is_served_and_stored(ctx):
    """A visitor sending `Cache-Control: no-store` on a cold page gets it, the fill carries no
    Cache-Control, and the page is then served to the next 20 visitors from the cache."""
    served_like_anyone(ctx, "Cache-Control", "no-store", "miss")


@case(DENIAL, obs=(1,))
def test_no_store_at_fresh_is_served_from_cache(ctx):
    """A visitor sending `Cache-Control: no-store` while the page is fresh is served from the
    cache; the origin count does not move, for it or the next 20 visitors."""
    served_like_anyone(ctx, "Cache-Control", "no-store", "fresh")


@case(DENIAL, obs=(1, 6))
def test_no_store_at_refresh_does_not_pass_key(ctx):
    """A visitor sending `Cache-Control: no-store` while the page is stale is served like anyone
    else; the one refresh carries no Cache-Control and is stored: the next 20 visitors are hits."""
    served_like_anyone(ctx, "Cache-Control", "no-store", "stale")


@case(DENIAL, obs=(1,))
def test_no_cache_at_miss_is_served_and_stored(ctx):
    """`Cache-Control: no-cache` on a cold page: one fill without it, then hits."""
    served_like_anyone(ctx, "Cache-Control", "no-cache", "miss")


@case(DENIAL, obs=(1, 6))
def test_no_cache_at_fresh_is_served_from_cache(ctx):
    """`Cache-Control: no-cache` on a fresh page is ignored: served from the cache, no refetch."""
    served_like_anyone(ctx, "Cache-Control", "no-cache", "fresh")


@case(DENIAL, obs=(1,))
def test_no_cache_at_refresh_does_not_pass_key(ctx):
    """`Cache-Control: no-cache` on a stale page: one refresh without it, stored; then hits."""
    served_like_anyone(ctx, "Cache-Control", "no-cache", "stale")


@case(DENIAL, obs=(1,))
def test_max_age_0_at_miss_is_served_and_stored(ctx):
    """`Cache-Control: max-age=0` on a cold page: one fill without it, then hits."""
    served_like_anyone(ctx, "Cache-Control", "max-age=0", "miss")


@case(DENIAL, obs=(1,))
def test_max_age_0_at_fresh_is_served_from_cache(ctx):
    """`Cache-Control: max-age=0` on a fresh page is ignored: served from the cache."""
    served_like_anyone(ctx, "Cache-Control", "max-age=0", "fresh")


@case(DENIAL, obs=(1,))
def test_max_age_0_at_refresh_does_not_pass_key(ctx):
    """`Cache-Control: max-age=0` on a stale page: one refresh without it, stored; then hits."""
    served_like_anyone(ctx, "Cache-Control", "max-age=0", "stale")


@case(DENIAL, obs=(1,))
def test_pragma_no_cache_at_miss_is_served_and_stored(ctx):
    """`Pragma: no-cache` on a cold page: one fill without Pragma, then hits."""
    served_like_anyone(ctx, "Pragma", "no-cache", "miss")


@case(DENIAL, obs=(1,))
def test_pragma_no_cache_at_fresh_is_served_from_cache(ctx):
    """`Pragma: no-cache` on a fresh page is ignored: served from the cache."""
    served_like_anyone(ctx, "Pragma", "no-cache", "fresh")


@case(DENIAL, obs=(1,))
def test_pragma_no_cache_at_refresh_does_not_pass_key(ctx):
    """`Pragma: no-cache` on a stale page: one refresh without Pragma, stored; then hits."""
    served_like_anyone(ctx, "Pragma", "no-cache", "stale")


@case(DENIAL, obs=(1,))
def test_only_if_cached_at_miss_is_served_and_stored(ctx):
    """`Cache-Control: only-if-cached` on a cold page is ignored like any request directive: the
    visitor gets the page (not a 504), one fill without it, then hits."""
    served_like_anyone(ctx, "Cache-Control", "only-if-cached", "miss")


@case(DENIAL, obs=(1,))
def test_min_fresh_at_fresh_is_served_from_cache(ctx):
    """`Cache-Control: min-fresh=60` on a page fresh for less than that is ignored: served from
    the cache, no refetch."""
    served_like_anyone(ctx, "Cache-Control", "min-fresh=60", "fresh")


@case(DENIAL, obs=(1,))
def test_authorization_at_miss_is_passed_and_not_stored(ctx):
    """A visitor with `Authorization` on a cold page is answered by the origin (which sees the
    credentials once); nothing of that answer is stored; anonymous visitors get one fill without
    Authorization and then hits."""
    passed_alone(ctx, "Authorization", "Bearer hostile-at-miss-", "miss")


@case(DENIAL, obs=(1,))
def test_authorization_at_fresh_is_passed_and_entry_kept(ctx):
    """A visitor with `Authorization` on a fresh page is passed to the origin; the entry stays:
    the next 20 anonymous visitors are hits."""
    passed_alone(ctx, "Authorization", "Bearer hostile-at-fresh-", "fresh")


@case(DENIAL, obs=(1,))
def test_authorization_at_refresh_leaves_refresh_alone(ctx):
    """A visitor with `Authorization` on a stale page is passed to the origin alone; the next
    anonymous visitor starts the one refresh (without Authorization), which is stored."""
    passed_alone(ctx, "Authorization", "Bearer hostile-at-stale-", "stale")


@case(DENIAL, obs=(1,))
def test_authorization_during_fill_leaves_waiters_alone(ctx):
    """While a slow fill is in flight, visitors with `Authorization` are each passed to the
    origin on their own; the anonymous visitors waiting for the fill all get the fill's page,
    and none of them ever gets an answer made for credentials."""
    ctx.trials(lambda i: authorization_during_fill(ctx, i), 3)


def authorization_during_fill(ctx, trial):
    """One trial: a slow fill, credentialed visitors while it runs, then anonymous waiters."""
    p = ctx.path("trial-%d" % trial)
    ctx.page(p, delay=0.8, body="page {path} n={n} who={h:Authorization} " + "x" * 32 + "\n")
    answers = {}

    def visit(name, headers, start):
        time.sleep(start)
        answers[name] = ctx.get(p, headers)

    starts = (0.02, 0.1, 0.25)
    tokens = ["Bearer hostile-%d-during-fill-%.2f" % (trial, at) for at in starts]
    plan = [("filler", [], 0.0)]
    plan += [(token, [("Authorization", token)], at) for at, token in zip(starts, tokens)]
    plan += [("waiter %d" % i, [], 0.4) for i in range(4)]
    threads = [threading.Thread(target=visit, args=x) for x in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    recs = ctx.quiet(p)
    fills = [x for x in recs if not x.has("Authorization")]
    for token in tokens:
        mine = [x for x in recs if token in x.values("Authorization")]
        expect(len(mine) == 1 and token.encode() in answers[token].body,
               "trial %d: the visitor with `Authorization: %s` was not passed alone: it got %s; "
               "%s" % (trial + 1, token, answers[token].brief(), describe(recs)))
    expect(len(fills) == 1, "trial %d: the fill was not single: %s" % (trial + 1, describe(recs)))
    for name, r in sorted(answers.items()):
        if name not in tokens:
            ctx.expect_page(r, p, "trial %d: the %s" % (trial + 1, name), fills[0].n)


@case(DENIAL, hosts=("nginx-proxy",), obs=(3,),
      why="the operator's `proxy_set_header Cookie \"\"` is an nginx-proxy setting")
def test_cookie_removed_by_operator_never_reaches_origin(ctx):
    """With `proxy_set_header Cookie "";` a visitor's cookie never reaches the origin, on a fill
    or on a refresh, and the page keeps being served from the cache."""
    cookie = ("Cookie", "session=hostile-secret; theme=dark")
    for state in ("miss", "stale"):
        p = ctx.path(state)
        ctx.page(p)
        if state == "stale":
            ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
            ctx.until_stale(p)
        ctx.expect_page(ctx.get(p, [cookie]), p, "the visitor with a cookie at %s" % state)
        ctx.quiet(p)
        followers_from_cache(ctx, p, 10)
        ctx.expect_never_forwarded(ctx.origin(p), ["Cookie"], "at %s" % state)


@case(DENIAL, hosts=("nginx-fastcgi",), obs=(1, 3),
      why="`peakcache_bypass $logged_in` is the README's WordPress setting")
def test_login_cookie_at_miss_is_passed_and_not_stored(ctx):
    """A `wordpress_logged_in` visitor on a cold page reaches PHP with its cookie; its page is
    not stored; anonymous visitors get one fill without the cookie, then hits."""
    passed_alone(ctx, "Cookie", "wordpress_logged_in_hostile=editor-", "miss")


@case(DENIAL, hosts=("nginx-fastcgi",), obs=(1,),
      why="`peakcache_bypass $logged_in` is the README's WordPress setting")
def test_login_cookie_bypasses_and_stores_nothing(ctx):
    """A `wordpress_logged_in` visitor on a stale page reaches PHP with its cookie (bypass),
    nothing is stored from it, and anonymous visitors keep getting the shared page."""
    passed_alone(ctx, "Cookie", "wordpress_logged_in_hostile=editor-", "stale")


@case(DENIAL, hosts=("nginx-fastcgi",), obs=(1,),
      why="`peakcache_bypass $logged_in` is the README's WordPress setting")
def test_login_cookie_at_fresh_is_passed_and_entry_kept(ctx):
    """A `wordpress_logged_in` visitor on a fresh page reaches PHP; the next 20 anonymous
    visitors still get the stored page."""
    passed_alone(ctx, "Cookie", "wordpress_logged_in_hostile=editor-", "fresh")


@case(DENIAL, obs=(1,))
def test_other_cookie_is_served_from_cache(ctx):
    """A visitor with an ordinary cookie (`theme=dark`, analytics) is served from the cache at
    fresh and stale like anyone else; it switches nothing off."""
    cookie = ("Cookie", "theme=dark; _ga=GA1.2.3")
    for state in ("fresh", "stale"):
        p = ctx.path(state)
        ctx.page(p)
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        if state == "stale":
            ctx.until_stale(p)
        ctx.expect_page(ctx.get(p, [cookie]), p, "the visitor with a cookie at %s" % state,
                        1 if state == "fresh" else None)
        ctx.quiet(p)
        followers_from_cache(ctx, p, 10)
        ctx.expect_one_per_expiry(p)


def range_visitor(ctx, state):
    """`Range: bytes=0-3` at `state`: a correct 206 or the full page; a Range never reaches the
    origin on a fill; the next plain visitors get the whole page from the cache."""
    p = ctx.path()
    ctx.page(p, ranges=True)
    if state != "miss":
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        if state == "stale":
            ctx.until_stale(p)
    r = ctx.get(p, [("Range", "bytes=0-3")])
    if r.status == 206:
        expect(r.body == b"page" and (r.header("Content-Range") or "").startswith("bytes 0-3/"),
               "the Range visitor got a wrong 206: %s, Content-Range %s"
               % (r.brief(), r.header("Content-Range")))
    else:
        ctx.expect_page(r, p, "the Range visitor (a 206 or the whole page)")
    ctx.quiet(p)
    if state != "fresh":
        ctx.get(p)  # the first plain visitor may be the one that fills or refreshes
        ctx.quiet(p)
    recs = ctx.origin(p)
    ranged = [x for x in recs if x.has("Range") or x.has("If-Range")]
    followers_from_cache(ctx, p, 20, passed=ranged)
    recs = ctx.origin(p)
    ctx.expect_one_per_expiry(p, records=[x for x in recs if x not in ranged])


@case(DENIAL, obs=(1, 3))
def test_range_at_miss_fills_whole_page(ctx):
    """`Range: bytes=0-3` on a cold page: the visitor gets those 4 bytes (206) or the page, and
    the page (never a part) is what the next 20 visitors get from the cache."""
    range_visitor(ctx, "miss")


@case(DENIAL, obs=(1,))
def test_range_at_fresh_is_answered_from_cache(ctx):
    """`Range: bytes=0-3` on a fresh page is answered from the cache (206 or 200); the page
    stays whole and cached."""
    range_visitor(ctx, "fresh")


@case(DENIAL, obs=(1, 3))
def test_range_at_refresh_does_not_pass_key(ctx):
    """`Range: bytes=0-3` on a stale page: the refresh never carries Range, a 206 never makes
    the key pass, and the next 20 visitors get the whole page from the cache."""
    range_visitor(ctx, "stale")


@case(DENIAL, obs=(1,))
def test_origin_206_to_plain_get_is_never_served_as_whole(ctx):
    """An origin that answers 206 to a request without Range may make the key pass, but no
    visitor ever gets those bytes as a whole 200 page."""
    p = ctx.path()
    ctx.define(p, status=206, body="part",
               headers=[("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-3/100")])
    for i, r in enumerate(ctx.plain(p, 5)):
        expect(r.status == 206 and r.header("Content-Range") == "bytes 0-3/100",
               "visitor %d got %s with Content-Range %s, expected the origin's 206 as it is"
               % (i + 1, r.brief(), r.header("Content-Range")))


@case(DENIAL, hosts=("proxy",), obs=(6,),
      why="freeze is the proxy's admin API; the nginx module exposes none")
def test_no_cache_while_frozen_is_served_from_cache(ctx):
    """While the cache is frozen ("let's not touch anything"), a visitor's `Cache-Control:
    no-cache` or `Pragma: no-cache` is served from the cache: nothing reaches the origin."""
    p = ctx.path()
    ctx.page(p)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    r = ctx.host.freeze(True)
    expect(r.status == 200, "freezing got %s" % r.brief())
    try:
        for headers in ([("Cache-Control", "no-cache")], [("Pragma", "no-cache")],
                        [("Cache-Control", "max-age=0")]):
            got = ctx.get(p, headers)
            ctx.expect_page(got, p, "the `%s: %s` visitor while frozen" % headers[0], 1)
        recs = ctx.origin(p)
        expect(len(recs) == 1, "while frozen: %s" % describe(recs))
    finally:
        ctx.host.freeze(False)
