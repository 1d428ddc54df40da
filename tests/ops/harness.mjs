// Helpers of the operations tests: a counting origin that can fail, nginx with the module from
// a generated config (prefix in a temp dir, free loopback ports), bounded traffic.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const ROOT = path.resolve(import.meta.dirname, "../..");
const NGINX = process.env.NGINX || "/usr/sbin/nginx";
const MODULE = process.env.PEAKCACHE_MODULE || path.join(ROOT, "target/nginx/ngx_http_peakcache_module.so");

export { sleep };

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// Pages by path prefix: /page/ fresh for a second with long stale windows, /snap/ fresh for
// ten minutes. `failing` makes every answer a 503; `version` is in every body.
export async function startOrigin() {
  const origin = { counts: new Map(), total: 0, failing: false, version: 1 };
  origin.server = http.createServer((req, res) => {
    const p = req.url.split("?")[0];
    origin.counts.set(p, (origin.counts.get(p) || 0) + 1);
    origin.total++;
    if (origin.failing) {
      res.writeHead(503, { "Content-Type": "text/plain", "Content-Length": 5 });
      res.end("down\n");
      return;
    }
    const body = `${p} v${origin.version}\n`;
    const cc = p.startsWith("/snap/") ? "max-age=600"
      : "max-age=1, stale-while-revalidate=2, stale-if-error=600";
    res.writeHead(200, { "Content-Type": "text/plain", "Cache-Control": cc,
      "Content-Length": Buffer.byteLength(body), "Surrogate-Key": "all" });
    res.end(body);
  });
  origin.server.keepAliveTimeout = 30000;
  origin.port = await new Promise((resolve) => origin.server.listen(0, "127.0.0.1",
    () => resolve(origin.server.address().port)));
  origin.count = (p) => origin.counts.get(p) || 0;
  origin.stop = () => new Promise((resolve) => { origin.server.closeAllConnections(); origin.server.close(resolve); });
  return origin;
}

function conf({ prefix, port, originPort, zone, workers, zoneParams }) {
  const user = process.geteuid() === 0 ? "user root root;" : "";
  return `
load_module ${MODULE};
${user}
worker_processes ${workers};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${prefix}/body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;

    peakcache_zone ${zone} size=8m path=${prefix}/${zone}.shm ${zoneParams};

    server {
        listen 127.0.0.1:${port} backlog=1024 reuseport;
        location / {
            peakcache ${zone};
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:${originPort};
        }
        location /purge {
            allow 127.0.0.1;
            deny all;
            peakcache_purge ${zone};
        }
        location /status {
            allow 127.0.0.1;
            deny all;
            peakcache_status_page ${zone};
        }
    }
}
`;
}

// nginx with a zone in its prefix; `start()` again after `stop()` is a restart on the same
// files. `zoneParams` is appended to the peakcache_zone line.
export async function makeNginx(origin, { workers = 2, zoneParams = "" } = {}) {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "peakcache-ops-"));
  fs.chmodSync(prefix, 0o755);
  const port = await freePort();
  const zone = `ops${port}`;
  const file = path.join(prefix, "nginx.conf");
  fs.writeFileSync(file, conf({ prefix, port, originPort: origin.port, zone, workers, zoneParams }));
  const n = { prefix, port, zone, region: path.join(prefix, `${zone}.shm`), proc: null };
  n.url = (p) => `http://127.0.0.1:${port}${p}`;
  n.log = () => fs.readFileSync(path.join(prefix, "error.log"), "utf8");
  n.start = async () => {
    const env = { ...process.env };
    delete env.NGINX;
    n.proc = spawn(NGINX, ["-p", prefix, "-c", file, "-e", path.join(prefix, "error.log")],
      { stdio: ["ignore", "ignore", "pipe"], env });
    let stderr = "";
    n.proc.stderr.on("data", (d) => { stderr += d; });
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (n.proc.exitCode !== null) throw new Error("nginx exited: " + stderr);
      const up = await new Promise((resolve) => {
        const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
        s.on("error", () => resolve(false));
      });
      if (up) return;
      await sleep(50);
    }
    throw new Error("nginx did not start");
  };
  n.stop = async () => {
    if (!n.proc || n.proc.exitCode !== null) return;
    const done = new Promise((resolve) => n.proc.once("exit", resolve));
    n.proc.kill("SIGQUIT");
    const t = setTimeout(() => n.proc.kill("SIGKILL"), 10000);
    await done;
    clearTimeout(t);
  };
  n.remove = () => fs.rmSync(prefix, { recursive: true, force: true });
  await n.start();
  return n;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

// One request; resolves { status, headers, body }.
export function request(url, { method = "GET", headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(10000, () => req.destroy(new Error("timeout: " + url)));
    req.on("error", reject);
    req.end();
  });
}

export async function json(url) {
  const r = await request(url, { headers: { Accept: "application/json" } });
  if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

// `loops` concurrent visitors, each a request after the other to `pick()`, until `stop()`.
export function traffic(base, pick, loops = 8) {
  let running = true, sent = 0;
  const runs = Array.from({ length: loops }, async () => {
    while (running) {
      try { await request(base + pick()); sent++; } catch { await sleep(20); }
    }
  });
  return { stop: async () => { running = false; await Promise.all(runs); return sent; }, sent: () => sent };
}
