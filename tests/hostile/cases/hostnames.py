"""Host confusion: one page per normalised host and path, whatever way the host is written.

The invariant of every case here: a visitor only ever gets a body the origin produced for the
same normalised host (lower case, no trailing dot, no default port) as the visitor asked for.
An absolute-form target names the host (RFC 9112 §3.2.2), whatever the Host header says.
"""

from harness import case, describe, expect, normalised_host

HOSTS = "host confusion"
BODY = "page {path} n={n} host={h:Host} " + "x" * 32 + "\n"


def reflected_host(r):
    if b" host=" not in r.body:
        return None
    return r.body.split(b" host=")[-1].split(b" ")[0].decode("latin-1")


def hostname(host):
    """The normalised host without its port (nginx's `$host` drops the port)."""
    return normalised_host(host).rsplit(":", 1)[0] if ":" in host else normalised_host(host)


def expect_own_host(ctx, r, visitor_host, what, p):
    """`r` is a page made for `visitor_host`, or a refusal."""
    if r.status != 200:
        return
    made_for = reflected_host(r)
    expect(made_for is not None and hostname(made_for) == hostname(visitor_host),
           "%s (for %s) got %s made for host %r; %s"
           % (what, visitor_host, r.brief(), made_for, describe(ctx.origin(p))))


@case(HOSTS, obs=(7,))
def test_absolute_form_target_is_keyed_by_its_host(ctx):
    """`GET http://a.../x` with `Host: b...` is answered and cached as a...: the next plain
    visitor of a... is served that page from the cache, and b...'s visitors only get pages made
    for b...."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    a, b = "a.hostile.test", "b.hostile.test"
    first = ctx.request("GET", "http://%s%s" % (a, p), host=b)
    expect(first.status == 200, "the absolute-form request got %s" % first.brief())
    expect_own_host(ctx, first, a, "the absolute-form request", p)
    ctx.quiet(p)
    for _ in range(3):
        expect_own_host(ctx, ctx.get(p, host=b), b, "a visitor of b", p)
    again = ctx.get(p, host=a)
    expect_own_host(ctx, again, a, "the next visitor of a", p)
    recs = ctx.origin(p)
    expect(again.served_n() == first.served_n(),
           "the next visitor of a got %s, not the page #%s stored for a; %s"
           % (again.brief(), first.served_n(), describe(recs)))


@case(HOSTS, obs=(7,))
def test_host_case_is_one_key(ctx):
    """`Host: A.Hostile.Test` and `Host: a.hostile.test` are one page: one origin request."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    rs = [ctx.get(p, host=h) for h in ("A.Hostile.Test", "a.hostile.test", "a.HOSTILE.test")]
    for r, h in zip(rs, ("A.Hostile.Test", "a.hostile.test", "a.HOSTILE.test")):
        ctx.expect_page(r, p, "the visitor for %s" % h, 1)
        expect_own_host(ctx, r, h, "the visitor", p)


@case(HOSTS, obs=(7,))
def test_default_port_is_the_same_key(ctx):
    """`Host: a.hostile.test:80` and `Host: a.hostile.test` are one page: one origin request."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    for h in ("a.hostile.test:80", "a.hostile.test", "a.hostile.test:80"):
        r = ctx.get(p, host=h)
        ctx.expect_page(r, p, "the visitor for %s" % h, 1)
        expect_own_host(ctx, r, h, "the visitor", p)


@case(HOSTS, obs=(7,))
def test_other_port_is_another_key(ctx):
    """`Host: a.hostile.test:8080` is another page than `a.hostile.test`: each fills once and
    each host's visitors get their own page back."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    r1 = ctx.get(p, host="a.hostile.test")
    r2 = ctx.get(p, host="a.hostile.test:8080")
    ctx.expect_page(r1, p, "the visitor for a.hostile.test", 1)
    ctx.expect_page(r2, p, "the visitor for a.hostile.test:8080 (another key)", 2)
    for h, n in (("a.hostile.test", 1), ("a.hostile.test:8080", 2)):
        ctx.expect_page(ctx.get(p, host=h), p, "the next visitor for %s" % h, n)


@case(HOSTS, obs=(7,))
def test_trailing_dot_never_mixes_hosts(ctx):
    """`Host: a.hostile.test.` is the same site as `a.hostile.test` or a page of its own, never
    another host's page; once both are cached, visitors are hits."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    for h in ("a.hostile.test.", "a.hostile.test", "b.hostile.test"):
        r = ctx.get(p, host=h)
        ctx.expect_page(r, p, "the visitor for %s" % h)
        expect_own_host(ctx, r, h, "the visitor", p)
    before = len(ctx.quiet(p))
    for h in ("a.hostile.test.", "a.hostile.test", "b.hostile.test"):
        expect_own_host(ctx, ctx.get(p, host=h), h, "the next visitor", p)
    recs = ctx.origin(p)
    expect(len(recs) == before, "the second round reached the origin: %s" % describe(recs))


@case(HOSTS, obs=(6, 7))
def test_userinfo_in_absolute_target_never_mixes_hosts(ctx):
    """`GET http://user:pass@a.../x` is refused or answered as a...; the origin never sees the
    userinfo as a host, and later visitors only get pages made for their own host."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    a = "a.hostile.test"
    r = ctx.request("GET", "http://user:pass@%s%s" % (a, p), host=a)
    ctx.check(r.status in (200, 400), "the userinfo request got %s" % r.brief())
    expect_own_host(ctx, r, a, "the userinfo request", p)
    for rec in ctx.quiet(p):
        expect("@" not in (rec.header("Host") or ""), "the origin got a Host with userinfo: %s"
               % rec.brief())
    for i in range(3):
        later = ctx.get(p, host=a)
        ctx.expect_page(later, p, "later visitor %d of %s" % (i + 1, a))
        expect_own_host(ctx, later, a, "later visitor %d" % (i + 1), p)


def never_under_bare_host(ctx, odd_host):
    """A request with `Host: odd_host` is refused or passed; it is never stored as the bare
    host's page, which later visitors of the bare host keep getting."""
    p = ctx.path()
    ctx.page(p, body=BODY)
    bare = "a.hostile.test"
    r = ctx.get(p, host=odd_host)
    ctx.check(r.status in (200, 400), "the visitor for %r got %s" % (odd_host, r.brief()))
    ctx.quiet(p)
    for i in range(3):
        later = ctx.get(p, host=bare)
        ctx.expect_page(later, p, "visitor %d of %s" % (i + 1, bare))
        expect(reflected_host(later) == bare,
               "visitor %d of %s got the page made for %r (%s); %s"
               % (i + 1, bare, reflected_host(later), later.brief(), describe(ctx.origin(p))))


@case(HOSTS, obs=(6,))
def test_userinfo_in_host_never_stored_under_bare_host(ctx):
    """`Host: user@a.hostile.test` is refused or bypassed, never stored as a.hostile.test's
    page."""
    never_under_bare_host(ctx, "user@a.hostile.test")


@case(HOSTS, obs=(6,))
def test_non_numeric_port_never_stored_under_bare_host(ctx):
    """`Host: a.hostile.test:abc` is refused or bypassed, never stored as a.hostile.test's
    page."""
    never_under_bare_host(ctx, "a.hostile.test:abc")
