"""Vary confusion: a variant is only ever served to visitors whose headers select it."""

import re

from harness import case, describe, expect

VARY = "Vary confusion"
BODY = "page {path} n={n} ae={h:Accept-Encoding} al={h:Accept-Language} " + "x" * 32 + "\n"


def label(r, field):
    m = re.search((r" %s=(\S+) " % field).encode(), r.body)
    return m.group(1).decode("latin-1") if m else None


def expect_selected(ctx, r, headers, p, what):
    """Every field the answer says it varies on has the value this visitor sent."""
    expect(r.status == 200, "%s got %s" % (what, r.brief()))
    sent = {k.lower(): v for k, v in headers}
    for field in (r.header("Vary") or "").split(","):
        field = field.strip().lower()
        short = {"accept-encoding": "ae", "accept-language": "al"}.get(field)
        if short:
            expect(label(r, short) == sent.get(field, "-"),
                   "%s (%s: %s) got a variant made for %s=%s: %s; %s"
                   % (what, field, sent.get(field, "(none)"), field, label(r, short), r.brief(),
                      describe(ctx.origin(p))))


@case(VARY, obs=(6,))
def test_vary_variants_never_cross(ctx):
    """A page that varies on Accept-Encoding is stored once per encoding: three visitors'
    encodings give three fills, and every later visitor gets its own encoding's variant."""
    p = ctx.path()
    ctx.page(p, headers=[("Vary", "Accept-Encoding")], body=BODY)
    encodings = ("gzip", "br", "identity")
    for rnd in range(3):
        for enc in encodings:
            headers = [("Accept-Encoding", enc)]
            r = ctx.get(p, headers)
            expect_selected(ctx, r, headers, p, "round %d, the %s visitor" % (rnd + 1, enc))
            expect(label(r, "ae") == enc, "round %d, the %s visitor got %s"
                   % (rnd + 1, enc, r.brief()))
    recs = ctx.origin(p)
    expect(len(recs) == 3, "three variants took %s" % describe(recs))


@case(VARY, obs=(6,))
def test_vary_star_is_never_served_from_cache(ctx):
    """A response with `Vary: *` is never served to another request: every visitor gets the
    origin's own answer to it."""
    p = ctx.path()
    ctx.page(p, headers=[("Vary", "*")], body=BODY)
    for i in range(4):
        r = ctx.get(p)
        ctx.expect_page(r, p, "visitor %d" % (i + 1), i + 1)


@case(VARY, obs=(6,))
def test_vary_change_between_responses_never_crosses(ctx):
    """A page that varied on Accept-Encoding and, after it went stale, varies on Accept-Language:
    every visitor, during the refresh and after it, gets a body made for the headers the
    answer says it varies on."""
    p = ctx.path()
    ctx.page(p, headers=[("Vary", "Accept-Encoding")], body=BODY)
    visitors = [[("Accept-Encoding", "gzip"), ("Accept-Language", "en")],
                [("Accept-Encoding", "gzip"), ("Accept-Language", "fr")],
                [("Accept-Encoding", "br"), ("Accept-Language", "fr")],
                [("Accept-Encoding", "br"), ("Accept-Language", "en")]]
    for i, headers in enumerate(visitors):
        expect_selected(ctx, ctx.get(p, headers), headers, p, "before the change, visitor %d"
                        % (i + 1))
    ctx.until_stale(p)
    ctx.page(p, headers=[("Vary", "Accept-Language")], body=BODY)
    for rnd in range(3):
        for i, headers in enumerate(visitors):
            expect_selected(ctx, ctx.get(p, headers), headers, p,
                            "after the change, round %d, visitor %d" % (rnd + 1, i + 1))
        ctx.quiet(p, idle=0.3)
