// The alert rules under promtool, and the metric names of the rules and of the Grafana
// dashboard against what the exporters really serve: nginx's status location
// (?format=prometheus) and peakcache-proxy's admin /metrics.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { ROOT, freePort, makeNginx, request, sleep, startOrigin } from "./harness.mjs";

const RULES = path.join(ROOT, "deploy/prometheus");
const DASHBOARD = path.join(ROOT, "deploy/grafana/peakcache-dashboard.json");
const PROXY = process.env.PEAKCACHE_PROXY || path.join(ROOT, "target/release/peakcache-proxy");
let origin, nginx, proxy, admin;

before(async () => {
  origin = await startOrigin();
  nginx = await makeNginx(origin, { workers: 1 });
  assert.ok(fs.existsSync(PROXY), `${PROXY}: build it first (cargo build --release -p peakcache-proxy)`);
  const [listen, adminPort] = [await freePort(), await freePort()];
  proxy = spawn(PROXY, ["--listen", `127.0.0.1:${listen}`, "--origin", `http://127.0.0.1:${origin.port}`,
    "--admin", `127.0.0.1:${adminPort}`], { stdio: "ignore" });
  admin = `http://127.0.0.1:${adminPort}`;
  for (let i = 0; i < 100; i++) {
    try { await request(`${admin}/metrics`); break; } catch { await sleep(50); }
  }
  // Some traffic, so that every labelled family has its members.
  await request(nginx.url("/page/1"));
  await request(`http://127.0.0.1:${listen}/page/1`);
});

after(async () => {
  proxy?.kill();
  await nginx?.stop();
  nginx?.remove();
  await origin?.stop();
});

// Metric names a PromQL expression uses (`peakcache_...`, label matchers excluded).
function metricNames(text) {
  return new Set([...text.matchAll(/\bpeakcache_[a-z_]+\b/g)].map((m) => m[0]));
}

// The PromQL of the rules file: each `expr:` and the lines indented under it.
function ruleExprs(yaml) {
  const out = [];
  let indent = -1;
  for (const line of yaml.split("\n")) {
    const m = line.match(/^(\s*)expr:(.*)$/);
    if (m) { indent = m[1].length; out.push(m[2]); continue; }
    if (indent >= 0 && line.match(/^\s*/)[0].length > indent) out.push(line);
    else indent = -1;
  }
  return out.join("\n");
}

function exported(text) {
  return new Set(text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(/[{ ]/)[0]));
}

test("promtool accepts the rules and their unit tests pass", () => {
  for (const args of [["check", "rules", "peakcache-rules.yml"], ["test", "rules", "peakcache-rules.test.yml"]]) {
    const r = spawnSync("promtool", args, { cwd: RULES, encoding: "utf8" });
    assert.equal(r.status, 0, `promtool ${args.join(" ")}:\n${r.stdout}${r.stderr}`);
  }
});

test("every metric the rules and the dashboard query is exported by nginx and the proxy", async () => {
  const fromNginx = exported((await request(nginx.url("/status?format=prometheus"))).body);
  const fromProxy = exported((await request(`${admin}/metrics`)).body);
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
  const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
  assert.ok(queries.length >= 12);
  const rules = ruleExprs(fs.readFileSync(path.join(RULES, "peakcache-rules.yml"), "utf8"));
  const used = metricNames(queries.join("\n") + "\n" + rules);
  assert.ok(used.size >= 15, [...used].join(" "));
  for (const name of used) {
    assert.ok(fromNginx.has(name), `${name} is not in nginx's Prometheus text`);
    // The proxy keeps its cache in its own memory: it has no shared region.
    if (!name.startsWith("peakcache_region_")) assert.ok(fromProxy.has(name), `${name} is not in the proxy's /metrics`);
  }
});
