"""Poisoning through unkeyed or hop-by-hop headers.

The origin reflects headers a framework might act on; whatever a visitor sends that is not part
of the key must never shape the page another visitor gets. Hop-by-hop headers stop at the cache:
the origin never receives them, nor the fields a visitor's Connection names.
"""

from harness import case, describe, expect

POISONING = "poisoning"


def reflected_header(ctx, header, value):
    """An attacker's `header: value`, at miss and at refresh time, never reaches another
    visitor's body; the page stays cached for everyone."""
    marker = ("reflected=" + value).encode()
    for state in ("miss", "stale"):
        p = ctx.path(state)
        ctx.page(p, body="page {path} n={n} reflected={h:%s} " % header + "x" * 32 + "\n")
        if state == "stale":
            ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
            ctx.until_stale(p)
        attack = ctx.get(p, [(header, value)])
        ctx.check(attack.status == 200, "the attacker at %s got %s" % (state, attack.brief()))
        ctx.quiet(p)
        for i, r in enumerate(ctx.plain(p, 10)):
            expect(marker not in r.body,
                   "at %s, plain visitor %d got the page made for `%s: %s` (%s); %s"
                   % (state, i + 1, header, value, r.brief(), describe(ctx.origin(p))))
            ctx.check(r.status == 200 and r.served_n() is not None,
                      "at %s, plain visitor %d got %s" % (state, i + 1, r.brief()), once=state)
        recs = ctx.origin(p)
        ctx.expect_one_per_expiry(p, records=[x for x in recs if not x.has(header)],
                                  what="at %s" % state)


@case(POISONING, obs=(3,))
def test_x_forwarded_host_never_reaches_other_visitors(ctx):
    """A page the origin built from an attacker's X-Forwarded-Host (links to another site) is
    never served to anyone else."""
    reflected_header(ctx, "X-Forwarded-Host", "evil.example")


@case(POISONING, obs=(3,))
def test_x_forwarded_scheme_never_reaches_other_visitors(ctx):
    """A page the origin built from an attacker's X-Forwarded-Scheme (a redirect loop) is never
    served to anyone else."""
    reflected_header(ctx, "X-Forwarded-Scheme", "evilscheme")


@case(POISONING, obs=(3,))
def test_x_original_url_never_reaches_other_visitors(ctx):
    """A page the origin routed by an attacker's X-Original-URL (another page's content) is never
    served under this URL to anyone else."""
    reflected_header(ctx, "X-Original-URL", "/admin-evil")


@case(POISONING, obs=(3,))
def test_x_rewrite_url_never_reaches_other_visitors(ctx):
    """A page the origin routed by an attacker's X-Rewrite-URL is never served to anyone else."""
    reflected_header(ctx, "X-Rewrite-URL", "/rewrite-evil")


@case(POISONING, obs=(3,))
def test_method_override_never_reaches_other_visitors(ctx):
    """A page the origin built for an attacker's X-HTTP-Method-Override is never served to
    anyone else."""
    reflected_header(ctx, "X-HTTP-Method-Override", "DELETE")


@case(POISONING, obs=(3,))
def test_forwarded_never_reaches_other_visitors(ctx):
    """A page the origin built from an attacker's `Forwarded: host=...` (RFC 7239) is never served
    to anyone else."""
    reflected_header(ctx, "Forwarded", "host=evil.example;proto=http")


@case(POISONING, obs=(3,))
def test_campaign_parameters_are_one_page_without_them_upstream(ctx):
    """Campaign links (`utm_*`, `gclid`, `fbclid`) are the page without them: the fill's URL
    carries none of them, and every campaign link is then a hit on that one page; other query
    parameters still make other pages."""
    p = ctx.path()
    ctx.page(p, body="page {path} n={n} query={query} " + "x" * 32 + "\n")
    first = ctx.get(p + "?utm_source=news&id=7&gclid=abc")
    ctx.expect_page(first, p, "the first campaign visitor", 1)
    recs = ctx.quiet(p)
    for rec in recs:
        ctx.check(not any(x in rec.target + "&" + rec.query for x in ("utm_", "gclid")),
                  "the fill's URL carried the campaign parameters: %s (query %r)"
                  % (rec.brief(), rec.query))
    expect(b"query=id=7 " in first.body, "the first campaign visitor got %s: a page made for "
           "query %r" % (first.brief(), first.body.split(b"query=")[-1].split(b" ")[0]))
    for query in ("id=7", "id=7&utm_campaign=spring&fbclid=x", "utm_medium=mail&id=7"):
        target = p + "?" + query
        ctx.expect_page(ctx.get(target), p, "the visitor of %s" % target, 1)
    ctx.expect_page(ctx.get(p + "?id=8&utm_source=news"), p, "the visitor of id=8 (another "
                    "page)", 2)
    recs = ctx.origin(p)
    expect(len(recs) == 2, "campaign links: %s" % describe(recs))


def acceptable_labels(accept_encoding):
    """The Accept-Encoding values the origin may have seen for a body this visitor can be
    given: its own, or identity (a cache may fill every variant with identity); a visitor that
    sends none may also get a body made for none."""
    return {accept_encoding or "-", "identity"}


def encoding_label(r):
    return r.body.split(b" enc=")[-1].split(b" ")[0].decode("latin-1") if b" enc=" in r.body \
        else None


@case(POISONING, obs=(3, 6))
def test_connection_naming_vary_field_never_mixes_variants(ctx):
    """`Connection: Accept-Encoding` with `Accept-Encoding: gzip` (at miss and at refresh) on a
    page that varies on Accept-Encoding: every visitor gets a body the origin made for the
    Accept-Encoding that visitor sent (or for identity, which every visitor here accepts)."""
    for state in ("miss", "stale"):
        p = ctx.path(state)
        ctx.page(p, headers=[("Vary", "Accept-Encoding")],
                 body="page {path} n={n} enc={h:Accept-Encoding} " + "x" * 32 + "\n")
        if state == "stale":
            ctx.get(p, [("Accept-Encoding", "gzip")])
            ctx.until_stale(p)
        attack = ctx.get(p, [("Accept-Encoding", "gzip"), ("Connection", "Accept-Encoding")])
        ctx.check(attack.status == 200, "the attacker at %s got %s" % (state, attack.brief()))
        ctx.quiet(p)
        for encoding in ("gzip", None, "br", "gzip"):
            headers = [("Accept-Encoding", encoding)] if encoding else []
            for _ in range(3):
                r = ctx.get(p, headers)
                expect(r.status == 200 and encoding_label(r) in acceptable_labels(encoding),
                       "at %s, a visitor with Accept-Encoding %s got %s: a body made for "
                       "Accept-Encoding %s; %s" % (state, encoding or "(none)", r.brief(),
                                                   encoding_label(r), describe(ctx.origin(p))))


@case(POISONING, obs=(6,))
def test_connection_naming_host_never_mixes_hosts(ctx):
    """`Connection: host` does not make the origin answer for another host than the one the page
    is stored under: a visitor only ever gets a body made for its own Host."""
    p = ctx.path()
    ctx.page(p, body="page {path} n={n} host={h:Host} " + "x" * 32 + "\n")
    attack = ctx.get(p, [("Connection", "host")], host="a.hostile.test")
    ctx.check(attack.status in (200, 400), "the attacker got %s" % attack.brief())
    ctx.quiet(p)
    for host in ("a.hostile.test", "b.hostile.test", "a.hostile.test"):
        for _ in range(3):
            r = ctx.get(p, host=host)
            expect(r.status == 200 and ("host=%s " % host).encode() in r.body,
                   "a visitor for %s got %s: %s; %s" % (host, r.brief(), clip_host(r.body),
                                                        describe(ctx.origin(p))))


def clip_host(body):
    return "a body made for host " + body.split(b" host=")[-1].split(b" ")[0].decode("latin-1") \
        if b" host=" in body else "no page"


HOP_BY_HOP = [("Connection", "keep-alive, X-Hop-Secret, Upgrade"), ("Connection", "TE"),
              ("X-Hop-Secret", "s3cret"), ("TE", "trailers"), ("Keep-Alive", "timeout=5"),
              ("Upgrade", "hostile/1"), ("Proxy-Authorization", "Basic aG9zdGlsZTpwcm94eQ==")]
HOP_BY_HOP_NAMES = ("TE", "Keep-Alive", "Upgrade", "X-Hop-Secret", "Proxy-Authorization")


def hop_by_hop(ctx, state):
    p = ctx.path()
    ctx.page(p)
    if state == "stale":
        ctx.expect_page(ctx.get(p), p, "the first visitor", 1)
        ctx.until_stale(p)
    r = ctx.get(p, HOP_BY_HOP)
    ctx.expect_page(r, p, "the visitor with hop-by-hop headers at %s" % state)
    recs = ctx.quiet(p)
    expect(len(recs) == (1 if state == "miss" else 2),
           "at %s: %s, expected one %s" % (state, describe(recs),
                                           "fill" if state == "miss" else "refresh"))
    last = recs[-1]
    carried = [name for name in HOP_BY_HOP_NAMES if last.has(name)]
    if len(last.values("Connection")) > 1:
        carried.append("%d Connection headers" % len(last.values("Connection")))
    ctx.check(not carried, "the %s at %s carried %s: %s" % (
        "fill" if state == "miss" else "refresh", state, ", ".join(carried), last.brief()))
    for i, follower in enumerate(ctx.plain(p, 5)):
        ctx.expect_page(follower, p, "plain visitor %d" % (i + 1), last.n)


@case(POISONING, obs=(3,))
def test_hop_by_hop_headers_never_reach_origin_on_fill(ctx):
    """A fill never carries TE, Keep-Alive, Upgrade, Proxy-Authorization, a second Connection
    or a field the visitor's Connection names; the page is stored and served."""
    hop_by_hop(ctx, "miss")


@case(POISONING, obs=(3,))
def test_hop_by_hop_headers_never_reach_origin_on_refresh(ctx):
    """A refresh started by a visitor with hop-by-hop headers carries none of them."""
    hop_by_hop(ctx, "stale")
