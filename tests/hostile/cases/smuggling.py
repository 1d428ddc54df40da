"""Request smuggling shapes on fills.

A GET that announces a body is either refused (400) or filled bodiless: the fill carries no
Content-Length, Transfer-Encoding or Expect, the origin never waits for bytes that will not
come, the body is never read as another request, and the host keeps answering.
"""

from harness import Conn, case, describe, expect

SMUGGLING = "request smuggling"


def smuggled_request(ctx):
    """A request hidden in the body: if anyone reads it as a request, the origin logs it."""
    p = ctx.path("smuggled")
    ctx.page(p)
    return p, ("GET %s HTTP/1.1\r\nHost: smuggled.hostile.test\r\n\r\n" % p).encode()


def bodiless_fill(ctx, headers, body, expect_continue=False):
    p = ctx.path()
    ctx.page(p)
    smuggled_path, _ = smuggled_request(ctx)
    conn = Conn(ctx.host.port)
    try:
        r = conn.exchange("GET", p, headers, body, expect_continue=expect_continue)
        ctx.note("GET %s with %s -> %s" % (p, headers, r.brief()), p)
        ctx.check(not r.error and r.status in (200, 400),
                  "the visitor got %s, expected the page or 400" % r.brief())
        if r.status == 200:
            ctx.expect_page(r, p, "the visitor")
        # the same connection: the next request is answered as itself (or was closed)
        after = ctx.path("after")
        ctx.page(after)
        if not r.error and (r.header("Connection") or "").lower() != "close":
            again = conn.exchange("GET", after)
            ctx.note("GET %s on the same connection -> %s" % (after, again.brief()), after)
            ctx.check(again.error or again.body.startswith(("page " + after).encode()),
                      "the next request on that connection got %s, not its own page"
                      % again.brief())
    finally:
        conn.close()
    recs = ctx.quiet(p)
    for rec in recs:
        carried = [name for name in ("Content-Length", "Transfer-Encoding", "Expect")
                   if rec.has(name) and rec.header(name) != "0"]
        if rec.body_len:
            carried.append("%d body bytes" % rec.body_len)
        ctx.check(not carried, "the fill carried %s: %s" % (", ".join(carried), rec.brief()))
        ctx.check(rec.complete, "the fill left the origin waiting %.1f s for a body it announced"
                  % rec.body_wait)
    expect(not ctx.origin(smuggled_path), "the body was read as a request: %s"
           % describe(ctx.origin(smuggled_path)))
    fresh = ctx.get(ctx.path("after"))
    ctx.expect_page(fresh, ctx.path("after"), "a new connection afterwards")


@case(SMUGGLING, obs=(6,))
def test_get_with_body_fills_bodiless(ctx):
    """A GET with `Content-Length` and a body (a request line) is filled without the length or
    the body, the origin never waits for bytes, and the next request on the host works."""
    _, body = smuggled_request(ctx)
    bodiless_fill(ctx, [("Content-Length", str(len(body)))], body)


@case(SMUGGLING, obs=(6,))
def test_duplicate_content_length_is_refused_or_bodiless(ctx):
    """A GET with two Content-Length headers is refused (400) or filled bodiless."""
    _, body = smuggled_request(ctx)
    bodiless_fill(ctx, [("Content-Length", str(len(body))), ("Content-Length", str(len(body)))],
                  body)


@case(SMUGGLING, obs=(6,))
def test_chunked_with_content_length_is_refused_or_bodiless(ctx):
    """A GET with `Transfer-Encoding: chunked` and a Content-Length is refused (400) or filled
    bodiless, its body never read as a request."""
    _, inner = smuggled_request(ctx)
    size_line = b"%x\r\n" % len(inner)
    body = size_line + inner + b"\r\n0\r\n\r\n"
    # a host that believed the length would read the hidden request right after the size line
    bodiless_fill(ctx, [("Transfer-Encoding", "chunked"),
                        ("Content-Length", str(len(size_line)))], body)


@case(SMUGGLING, obs=(6,))
def test_expect_continue_on_get_fills_bodiless(ctx):
    """A GET with `Expect: 100-continue` and a body is filled without Expect, length or body."""
    bodiless_fill(ctx, [("Expect", "100-continue"), ("Content-Length", "5")], b"hello",
                  expect_continue=True)
