// A link that stalls silently (a proxy that stops forwarding, keeping the sockets
// open) is noticed by the client's watchdog and replaced: within ferry's ping
// interval + 10 s after a silence, and soon after a request times out. What was
// pushed into the dead link arrives after the reconnect, exactly once.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ClientCode, connect } from "../dist/index.js";
import { StallingProxy } from "./proxy.mjs";
import { Ferry, eventually, record } from "./support.mjs";

/** ferry pings a socket silent for half of this: every 2 s. */
const IDLE_SECS = 4;
const PING_INTERVAL_MS = (IDLE_SECS * 1000) / 2;

let ferry;
let proxy;
const clients = [];

before(async () => {
  ferry = await new Ferry({ env: { FERRY_SESSION__IDLE_TIMEOUT_SECS: String(IDLE_SECS) } }).start();
  proxy = await new StallingProxy(ferry.port).listen();
});

after(async () => {
  for (const c of clients) c.close();
  await proxy?.close();
  await ferry?.dispose();
});

async function online(userId, url, extra = {}) {
  const token = await ferry.token(userId);
  const c = connect({ url, token, userId, reconnect: { minDelayMs: 100, maxDelayMs: 500 }, ...extra });
  clients.push(c);
  const seen = record(c);
  await c.opened();
  return { c, seen };
}

test("a silently stalled link is noticed and replaced within the ping interval + 10 s", async () => {
  const { c: alice } = await online("alice1", ferry.wsUrl);
  const { c: bob, seen: b } = await online("bob1", proxy.wsUrl, {
    liveness: { silentMs: PING_INTERVAL_MS, graceMs: 2000 },
  });
  const conv = "single:alice1-bob1";
  await alice.send({ convId: conv, content: "before" });
  await eventually("bob to get the first message", () => b.messages.length === 1);

  proxy.stall();
  const stalledAt = Date.now();
  // Pushed into the stalled link: bob cannot get it until the link is replaced.
  await alice.send({ convId: conv, content: "into the stall" });
  await eventually("bob to notice", () => b.closes.length === 1, PING_INTERVAL_MS + 10_000);
  await eventually("bob back", () => b.opens.length === 2, PING_INTERVAL_MS + 10_000);
  const replacedIn = Date.now() - stalledAt;
  assert.ok(replacedIn <= PING_INTERVAL_MS + 10_000, `replaced after ${replacedIn} ms`);

  const close = b.closes[0];
  assert.equal(close.origin, "client", JSON.stringify(close));
  assert.equal(close.code, 1006);
  assert.match(close.reason, /no frame from the server for \d+ ms/);
  assert.match(close.meaning, /stalled/);
  assert.equal(close.willReconnect, true);
  assert.equal(b.opens[1].reconnected, true);
  await eventually("the message pushed into the stall", () => b.messages.length === 2);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    b.messages.map((m) => [m.seq, m.text]),
    [
      [1, "before"],
      [2, "into the stall"],
    ],
  );
  assert.deepEqual(b.errors, []);
  assert.equal(bob.state, "open");
});

test("a request that times out makes the client check the link at once", async () => {
  const { c: carol, seen: c } = await online("carol2", proxy.wsUrl, {
    // A silence this long never ends within the test: only the timeout can start the check.
    liveness: { silentMs: 600_000, graceMs: 1000 },
    requestTimeoutMs: 1000,
  });
  proxy.stall();
  const err = await carol.send({ convId: "single:carol2-dave2", content: "lost?", clientMsgId: "carol2-1" }).then(
    () => undefined,
    (e) => e,
  );
  assert.equal(err?.code, ClientCode.Timeout, String(err));
  // Far sooner than the silence: the timeout started the check.
  await eventually("carol back", () => c.opens.length === 2, 15_000);
  assert.equal(c.closes.length, 1);
  assert.equal(c.closes[0].origin, "client");
  assert.match(c.closes[0].meaning, /stalled/);
  // The retry with the same clientMsgId is accepted (the first try never left the proxy).
  await carol.send({ convId: "single:carol2-dave2", content: "lost?", clientMsgId: "carol2-1" });
  await eventually("carol's own message", () => c.messages.length === 1);
  assert.deepEqual(
    c.messages.map((m) => [m.seq, m.text]),
    [[1, "lost?"]],
  );
});

test("a healthy but silent link is kept: the probe is answered", async () => {
  const { c: erin, seen: e } = await online("erin3", proxy.wsUrl, {
    liveness: { silentMs: 300, graceMs: 1000 },
  });
  // Many silences, each ended by a probe and its answer: no reconnect.
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(e.closes, []);
  assert.equal(e.opens.length, 1);
  assert.equal(erin.state, "open");
});
