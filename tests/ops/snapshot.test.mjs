// Snapshots and rollback through nginx: a warm restart after a reboot, and rollback in one
// request.
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { json, makeNginx, request, sleep, startOrigin } from "./harness.mjs";

const PAGES = Array.from({ length: 20 }, (_, i) => `/snap/${i}`);
let origin, nginx;

before(async () => {
  origin = await startOrigin();
  nginx = await makeNginx(origin, { zoneParams: "snapshot=zone.snapshot snapshot_interval=1s" });
});

after(async () => {
  await nginx?.stop();
  nginx?.remove();
  await origin?.stop();
});

test("a restart after a reboot serves the pages cached before it as hits, with no origin request", async () => {
  for (const p of PAGES) assert.equal((await request(nginx.url(p))).headers["x-cache"], "MISS");
  const snapshot = `${nginx.prefix}/zone.snapshot`;
  // The periodic snapshot (one worker a second) picks the pages up.
  const deadline = Date.now() + 5000;
  while (!/snapshot ".*" written, 20 entries/.test(nginx.log()) && Date.now() < deadline) await sleep(100);
  assert.match(nginx.log(), /snapshot ".*zone.snapshot" written, 20 entries/);
  assert.ok(fs.statSync(snapshot).size > 0);

  await nginx.stop();
  fs.rmSync(nginx.region); // a reboot empties /dev/shm
  const before = origin.total;
  await nginx.start();
  assert.match(nginx.log(), /snapshot ".*" restored, 20 entries \(0 skipped\)/);
  for (const p of PAGES) {
    const r = await request(nginx.url(p));
    assert.equal(r.headers["x-cache"], "HIT", p);
    assert.equal(r.body, `${p} v1\n`);
  }
  assert.equal(origin.total - before, 0, "no origin request after the restart");
});

test("rollback: one request restores the last good snapshot, frozen, entries keep their ages", async () => {
  assert.equal((await request(nginx.url("/purge?action=snapshot"))).status, 405, "a GET never acts");
  const snap = JSON.parse((await request(nginx.url("/purge?action=snapshot"), { method: "POST" })).body);
  assert.equal(snap.entries, 20);
  await sleep(1100);

  // A bad deploy: the origin answers v2 and the pages are refetched.
  origin.version = 2;
  await request(nginx.url("/purge?tag=all"), { method: "POST" });
  assert.equal((await request(nginx.url(PAGES[0]))).body, `${PAGES[0]} v2\n`);

  const r = await request(nginx.url("/purge?action=restore&freeze=1"), { method: "POST" });
  assert.equal(r.status, 200, r.body);
  const done = JSON.parse(r.body);
  assert.equal(done.action, "restore");
  assert.equal(done.entries, 20);
  assert.equal(done.frozen, true);
  const before = origin.total;
  const page = await request(nginx.url(PAGES[0]));
  assert.equal(page.body, `${PAGES[0]} v1\n`);
  assert.equal(page.headers["x-cache"], "HIT");
  assert.ok(Number(page.headers.age) >= 1, `Age ${page.headers.age}: the entry kept its age`);
  assert.equal(origin.total, before);

  const thaw = JSON.parse((await request(nginx.url("/purge?action=thaw"), { method: "POST" })).body);
  assert.equal(thaw.frozen, false);
  const status = await json(nginx.url("/status?history=5"));
  assert.equal(status.frozen, false);
});

test("an action the zone cannot do is refused with the reason", async () => {
  const bad = await request(nginx.url("/purge?action=explode"), { method: "POST" });
  assert.equal(bad.status, 400);
  assert.match(bad.body, /action=snapshot \| restore/);
});
