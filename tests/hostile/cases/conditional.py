"""Conditional and HEAD requests at every state of an entry (miss, fresh, stale).

A visitor's validators are the visitor's business: the cache answers them from the stored page
(304 when they match, the page when not) and never hands them to the origin on a fill, where a
304 would leave the cache with nothing to store. A HEAD is filled and refreshed with a GET, so
the stored page keeps its body.
"""

from harness import case, describe, expect

CONDITIONAL = "conditional requests"
HEAD = "HEAD"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
# Later than Last-Modified (so "not modified since"), and never what a cache would send itself.
VISITOR_SINCE = "Tue, 02 Jan 2024 00:00:00 GMT"
EARLIER = "Sun, 31 Dec 2023 00:00:00 GMT"


def validated_page(ctx, p):
    ctx.page(p, etag='"v1"', last_modified=LAST_MODIFIED)


def expect_not_modified(ctx, r, what):
    ctx.check(r.status == 304 and not r.body and not r.error,
              "%s: got %s, expected 304 from the cache" % (what, r.brief()))


def expect_visitor_validators_kept(ctx, p, token):
    """No origin request for `p` carries the visitor's own validators."""
    for rec in ctx.origin(p):
        for value in rec.values("If-None-Match"):
            ctx.check(token not in value, "the origin received the visitor's If-None-Match: %s"
                      % rec.brief(), once="inm")
        ctx.check(VISITOR_SINCE not in rec.values("If-Modified-Since"),
                  "the origin received the visitor's If-Modified-Since: %s" % rec.brief(),
                  once="ims")


@case(CONDITIONAL, obs=(3, 8))
def test_conditionals_at_miss_are_answered_from_the_fill(ctx):
    """On a cold page, a visitor's If-None-Match / If-Modified-Since do not reach the origin: the
    fill fetches the whole page, a matching visitor gets 304, a non-matching one the page, and
    the next visitors get the whole page from the cache."""
    plan = [("inm-match", [("If-None-Match", '"v1"')], 304),
            ("inm-other", [("If-None-Match", '"visitor-token"')], 200),
            ("ims-match", [("If-Modified-Since", VISITOR_SINCE)], 304)]
    for name, headers, status in plan:
        p = ctx.path(name)
        validated_page(ctx, p)
        r = ctx.get(p, headers)
        if status == 304:
            expect_not_modified(ctx, r, "the %s visitor at miss" % name)
        else:
            ctx.check(r.status == 200 and r.served_n() == 1,
                      "the %s visitor at miss got %s, expected the page" % (name, r.brief()))
        for rec in ctx.origin(p):
            ctx.check(not rec.has("If-None-Match") and not rec.has("If-Modified-Since"),
                      "the %s fill carried the visitor's validator: %s" % (name, rec.brief()))
        ctx.quiet(p)
        for i, follower in enumerate(ctx.plain(p, 5)):
            ctx.check(follower.status == 200 and follower.served_n() is not None
                      and len(follower.body) > 20,
                      "after the %s visitor, plain visitor %d got %s" % (name, i + 1,
                                                                          follower.brief()),
                      once=name)
        recs = ctx.origin(p)
        expect(len(recs) == 1, "the %s visitor: %s, expected one fill" % (name, describe(recs)))


@case(CONDITIONAL, obs=(8,))
def test_conditionals_at_fresh_are_answered_by_the_cache(ctx):
    """On a fresh page, If-None-Match and If-Modified-Since are answered by the cache: 304 when
    they match, the whole page when they do not; the origin count does not move."""
    p = ctx.path()
    validated_page(ctx, p)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    expect_not_modified(ctx, ctx.get(p, [("If-None-Match", '"v1"')]), "matching If-None-Match")
    expect_not_modified(ctx, ctx.get(p, [("If-None-Match", 'W/"v1", "other"')]),
                        "a list with the weak tag")
    expect_not_modified(ctx, ctx.get(p, [("If-Modified-Since", VISITOR_SINCE)]),
                        "If-Modified-Since after Last-Modified")
    for headers in ([("If-None-Match", '"visitor-token"')], [("If-Modified-Since", EARLIER)]):
        r = ctx.get(p, headers)
        ctx.check(r.status == 200 and r.served_n() == 1, "%s: got %s, expected the page #1"
                  % (headers[0][0] + ": " + headers[0][1], r.brief()))
    recs = ctx.origin(p)
    expect(len(recs) == 1, "conditionals at fresh reached the origin: %s" % describe(recs))


@case(CONDITIONAL, obs=(3, 4))
def test_conditionals_at_stale_never_reach_origin(ctx):
    """On a stale page, a visitor's validators are answered from the stale page (304 / page)
    while one refresh runs with the cache's own validators, never the visitor's."""
    p = ctx.path()
    validated_page(ctx, p)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    ctx.until_stale(p)
    token = "visitor-token"
    expect_not_modified(ctx, ctx.get(p, [("If-None-Match", '"%s", "v1"' % token)]),
                        "matching If-None-Match at stale")
    ctx.quiet(p)
    r = ctx.get(p, [("If-None-Match", '"%s"' % token)])
    ctx.check(r.status == 200 and r.served_n() is not None and len(r.body) > 20,
              "non-matching If-None-Match at stale: got %s, expected the page" % r.brief())
    expect_not_modified(ctx, ctx.get(p, [("If-Modified-Since", VISITOR_SINCE)]),
                        "If-Modified-Since at stale")
    ctx.quiet(p)
    expect_visitor_validators_kept(ctx, p, token)
    for i, follower in enumerate(ctx.plain(p, 5)):
        ctx.check(follower.status == 200 and len(follower.body) > 20,
                  "plain visitor %d after the refresh got %s" % (i + 1, follower.brief()),
                  once="followers")
    ctx.expect_one_per_expiry(p)


PRECONDITIONS = [("If-Match", '"v1"'), ("If-Unmodified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),
                 ("If-Range", '"v1"')]


@case(CONDITIONAL, obs=(3,))
def test_preconditions_never_reach_origin_on_fill(ctx):
    """If-Match, If-Unmodified-Since and If-Range (all true here) on a cold page and on a stale
    one: the visitor gets the page; if the origin sees them it is that visitor's own pass, whose
    answer no other visitor gets; the page is filled and kept without them."""
    for state in ("miss", "stale"):
        for name, value in PRECONDITIONS if state == "miss" else [("all", None)]:
            headers = [(name, value)] if value else PRECONDITIONS
            p = ctx.path("%s-%s" % (state, name.lower()))
            validated_page(ctx, p)
            if state == "stale":
                ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
                ctx.until_stale(p)
            r = ctx.get(p, headers)
            ctx.check(r.status == 200 and r.served_n() is not None,
                      "the %s visitor at %s got %s, expected the page" % (name, state, r.brief()))
            ctx.quiet(p)
            ctx.get(p)
            ctx.quiet(p)
            recs = ctx.origin(p)
            carried = {x.n for x in recs if any(x.has(h) for h, _ in PRECONDITIONS)}
            for i, follower in enumerate(ctx.plain(p, 5)):
                expect(follower.status == 200 and follower.served_n() not in carried,
                       "%s at %s: plain visitor %d got %s, the answer to a request that carried "
                       "the visitor's precondition (%s)" % (name, state, i + 1, follower.brief(),
                                                           describe(recs)))
            recs = ctx.origin(p)
            ctx.expect_one_per_expiry(p, records=[x for x in recs if x.n not in carried],
                                      what="%s at %s" % (name, state))


def head_page(ctx, p):
    """A page whose ETag changes with every answer, so a refresh must bring a whole body."""
    ctx.page(p, etag='"e{n}"')


def expect_head_answer(ctx, r, what):
    ctx.check(not r.error and r.status == 200 and not r.extra,
              "%s: got %s%s, expected 200 and no body" % (
                  what, r.brief(), ", then %d body bytes" % len(r.extra) if r.extra else ""))


def expect_fills_are_get(ctx, p):
    for rec in ctx.origin(p):
        ctx.check(rec.method == "GET", "the origin saw %s for a fill or refresh: %s"
                  % (rec.method, rec.brief()), once="method")


@case(HEAD, obs=(2,))
def test_head_at_miss_fills_with_get(ctx):
    """A HEAD on a cold page (an uptime monitor) is filled with a GET; the monitor gets the head
    without a body, and the next GET gets the whole page from the cache."""
    p = ctx.path()
    head_page(ctx, p)
    expect_head_answer(ctx, ctx.head(p), "the HEAD at miss")
    ctx.quiet(p)
    expect_fills_are_get(ctx, p)
    r = ctx.get(p)
    ctx.expect_page(r, p, "the GET after the HEAD")
    recs = ctx.origin(p)
    expect(len(recs) == 1, "the HEAD did not fill the page: %s" % describe(recs))


@case(HEAD, obs=(2,))
def test_head_at_fresh_is_answered_from_cache(ctx):
    """A HEAD on a fresh page is answered from the cache without a body; the page keeps its
    body and the origin count does not move."""
    p = ctx.path()
    head_page(ctx, p)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    expect_head_answer(ctx, ctx.head(p), "the HEAD at fresh")
    ctx.expect_page(ctx.get(p), p, "the GET after the HEAD", 1)
    recs = ctx.origin(p)
    expect(len(recs) == 1, "the HEAD reached the origin: %s" % describe(recs))


@case(HEAD, obs=(2,))
def test_head_at_refresh_keeps_the_body(ctx):
    """A HEAD on a stale page starts the refresh as a GET (on FastCGI, REQUEST_METHOD=GET); the
    refreshed page is stored whole: the next visitors get the new, non-empty body."""
    p = ctx.path()
    head_page(ctx, p)
    ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
    ctx.until_stale(p)
    expect_head_answer(ctx, ctx.head(p), "the HEAD at stale")
    recs = ctx.settle(p, 2)
    expect_fills_are_get(ctx, p)
    expect(len(recs) == 2, "the HEAD at stale: %s, expected one refresh" % describe(recs))
    for i, r in enumerate(ctx.plain(p, 5)):
        ctx.expect_page(r, p, "GET %d after the refresh" % (i + 1), 2)
