// Runs the real ferry binary for the tests: a fresh data directory and port each,
// the embedded backend, and helpers that talk to its development endpoints.

import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../..");
export const ferryBin = process.env.FERRY_BIN ?? join(repo, "target/debug/ferry");

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
export async function eventually(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class Ferry {
  /** `env`: extra FERRY_* settings; the same data dir and port survive restarts. */
  constructor({ env = {}, args = [] } = {}) {
    this.dataDir = mkdtempSync(join(tmpdir(), "ferry-web-"));
    this.env = env;
    this.args = args;
    this.proc = undefined;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start() {
    this.port ??= await freePort();
    const log = openSync(join(this.dataDir, "ferry.log"), "a");
    this.proc = spawn(ferryBin, [...this.args, "serve"], {
      env: {
        ...process.env,
        FERRY_DATA_DIR: this.dataDir,
        FERRY_SERVER__LISTEN: `127.0.0.1:${this.port}`,
        FERRY_SESSION__SHUTDOWN_GRACE_SECS: "3",
        FERRY_TELEMETRY__LOG_LEVEL: "info",
        ...this.env,
      },
      stdio: ["ignore", log, log],
    });
    const proc = this.proc;
    let exited = false;
    proc.once("exit", () => (exited = true));
    await eventually(
      "ferry to be ready",
      async () => {
        if (exited) throw new Error(`ferry exited early; log in ${this.dataDir}/ferry.log`);
        const r = await fetch(`${this.http}/readyz`);
        return r.ok;
      },
      60000,
    );
    return this;
  }

  /** SIGTERM, then SIGKILL if it does not stop in time. */
  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 15000);
    await done;
    clearTimeout(t);
    this.proc = undefined;
  }

  /** Stops ferry and removes its data directory. */
  async dispose() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  /** A token from the development endpoint. */
  async token(userId) {
    const r = await fetch(`${this.http}/demo/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId }),
    });
    if (!r.ok) throw new Error(`token for ${userId}: ${r.status} ${await r.text()}`);
    return (await r.json()).token;
  }

  /** Calls the server API with the generated service token. */
  async api(method, path, body) {
    const token = readFileSync(join(this.dataDir, "dev-service-token"), "utf8").trim();
    const r = await fetch(`${this.http}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }
}

/** Collects a client's events for assertions. */
export function record(client) {
  const seen = { messages: [], notices: [], closes: [], states: [], opens: [], gaps: [], errors: [] };
  client.on("message", (m) => seen.messages.push(m));
  client.on("notice", (n) => seen.notices.push(n));
  client.on("close", (c) => seen.closes.push(c));
  client.on("state", (s) => seen.states.push(s.state));
  client.on("open", (o) => seen.opens.push(o));
  client.on("gap", (g) => seen.gaps.push(g));
  client.on("error", (e) => seen.errors.push(e));
  return seen;
}
