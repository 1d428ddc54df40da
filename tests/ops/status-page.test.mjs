// The live status page in headless Chromium, against nginx with the module under generated
// traffic, with the origin failing half-way so the headline changes.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import puppeteer from "puppeteer-core";
import { ROOT, json, makeNginx, sleep, startOrigin, traffic } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOT = path.join(ROOT, "target/ops/status-page.png");
let origin, nginx, browser, profile;

before(async () => {
  origin = await startOrigin();
  nginx = await makeNginx(origin);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "peakcache-chromium-"));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await nginx?.stop();
  nginx?.remove();
  await origin?.stop();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

// What the page shows: every element's data-value by its data-metric, and the second shown.
async function shown(page) {
  return page.evaluate(() => {
    const out = { now: Number(document.body.dataset.now || 0) };
    for (const el of document.querySelectorAll("[data-metric]")) out[el.dataset.metric] = el.dataset.value;
    return out;
  });
}

async function nextSample(page, after) {
  await page.waitForFunction((t) => Number(document.body.dataset.now || 0) > t, { timeout: 5000 }, after);
  return shown(page);
}

// The page's rule, from the JSON: a counter's increase over the samples of the 5 s up to
// `now`, per second.
function rate(h, name, now, secs = 5) {
  let n = 0, s = 0;
  for (let i = h.t.length - 1; i >= 0 && h.t[i] > now - secs; i--) {
    if (h.t[i] <= now) { n += h[name][i]; s += h.dt[i]; }
  }
  return s ? n / s : 0;
}

test("the page shows the peak absorbed and the origin failing, numbers matching the JSON", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2 }); // a phone
  const pages = Array.from({ length: 30 }, (_, i) => `/page/${i}`);
  let fresh = 0;
  // Mostly the campaign's 30 pages; one request in ten for a page never seen before.
  const load = traffic(nginx.url(""), () => (Math.random() < 0.1 ? `/new/${fresh++}` : pages[Math.floor(Math.random() * 30)]));
  try {
    const resp = await page.goto(nginx.url("/status"), { waitUntil: "domcontentloaded" });
    assert.match(resp.headers()["content-type"], /^text\/html/);
    const a = await nextSample(page, 0);
    await sleep(2500);
    const b = await nextSample(page, a.now);
    assert.deepEqual(errors, []);
    assert.ok(b.now > a.now, "the page moves on");
    assert.ok(Number(b.total_visitors) > Number(a.total_visitors), "visitors counted between samples");
    assert.ok(Number(b.visitor_rps) > 0 && Number(b.origin_rps) < Number(b.visitor_rps));
    assert.match(b.headline, /^Absorbing the peak: [\d,.]+ visitors\/s, [\d,.]+ origin requests\/s, \d+ % served from cache$/);

    // Rates shown equal the JSON's for the same seconds (past samples never change).
    const d = await json(nginx.url("/status?format=json&history=300"));
    assert.ok(d.history.t.includes(b.now));
    for (const [metric, series] of [["visitor_rps", "visitor_requests"], ["origin_rps", "origin_requests"],
      ["sie_rps", "stale_if_error"], ["evictions_rps", "evictions"]]) {
      assert.ok(Math.abs(Number(b[metric]) - rate(d.history, series, b.now)) < 1e-9,
        `${metric}: ${b[metric]} shown, ${rate(d.history, series, b.now)} in the JSON`);
    }

    // The origin fails: stale-if-error for the campaign's pages, errors for new ones.
    origin.failing = true;
    await page.waitForFunction(() => /^Origin failing for \d+ s/.test(document.getElementById("headline").textContent),
      { timeout: 15000 });
    // The campaign's pages go past max-age (1 s) and stale-while-revalidate (2 s) before they
    // are served stale-if-error, and a second's counts reach the history at the next tick:
    // waited for, not slept on.
    await page.waitForFunction(
      () => Number(document.querySelector('[data-metric="sie_rps"]')?.dataset.value || 0) > 0,
      { timeout: 15000 });
    const c = await nextSample(page, b.now);
    assert.match(c.headline, /^Origin failing for \d+ s: serving last good copies to \d+ % of visitors/);
    assert.ok(Number(c.sie_rps) > 0, "stale-if-error served");
    assert.ok(Number(c.visitor_errors_rps) > 0, "new pages fail for their visitors");
    assert.ok(Number(c.origin_errors_rps) > 0);
    // Readable on a phone: nothing wider than the screen.
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
    fs.mkdirSync(path.dirname(SHOT), { recursive: true });
    await page.setViewport({ width: 1100, height: 900 });
    await sleep(1200);
    await page.screenshot({ path: SHOT, fullPage: true });
  } finally {
    await load.stop();
  }
  // Quiet: once every worker has ticked, the totals shown are the JSON's.
  await sleep(2500);
  const q = await nextSample(page, 0);
  const d = await json(nginx.url("/status?format=json&history=10"));
  assert.equal(Number(q.total_visitors), d.host.visitor_requests);
  assert.equal(Number(q.total_lookups), d.lookups);
  assert.equal(Number(q.entries), d.entries);
  assert.equal(Number(q.total_sie), d.stale_if_error);
});
