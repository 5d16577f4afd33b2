// How a client ends: close() says that this client closed it; a server restart says
// the server did; token() throwing Unauthorized or StopReconnecting ends the client
// for good, while any other error thrown by it is retried.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { StopReconnecting, Unauthorized, connect } from "../dist/index.js";
import { Ferry, eventually, record } from "./support.mjs";

let ferry;
const clients = [];

before(async () => {
  ferry = await new Ferry().start();
});

after(async () => {
  for (const c of clients) c.close();
  await ferry?.dispose();
});

function client(userId, token, extra = {}) {
  const c = connect({ url: ferry.wsUrl, token, userId, reconnect: { minDelayMs: 50, maxDelayMs: 100 }, ...extra });
  clients.push(c);
  return c;
}

test("close() reports that this client closed it, once, and never reconnects", async () => {
  const c = client("hana1", await ferry.token("hana1"));
  const seen = record(c);
  await c.opened();
  c.close();
  assert.equal(c.state, "closed");
  assert.equal(seen.closes.length, 1);
  const [close] = seen.closes;
  assert.equal(close.origin, "client");
  assert.equal(close.code, 1000);
  assert.equal(close.willReconnect, false);
  assert.match(close.meaning, /closed by this client/);
  assert.doesNotMatch(close.meaning, /server/);
  c.close();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(seen.closes.length, 1, "a second close() adds nothing");
  assert.deepEqual(seen.states, ["open", "closed"]);
  await assert.rejects(c.opened(), /closed/);
});

test("close() while reconnecting ends the reconnecting for good", async () => {
  const c = client("ivan2", () => Promise.reject(new Error("token service down")));
  const seen = record(c);
  await eventually("a retried token", () => seen.closes.length >= 2);
  c.close();
  const last = seen.closes.at(-1);
  assert.equal(last.origin, "client");
  assert.equal(last.willReconnect, false);
  assert.equal(c.state, "closed");
  const closes = seen.closes.length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(seen.closes.length, closes);
});

test("a server restart is reported as the server's close", async () => {
  const c = client("jana3", await ferry.token("jana3"));
  const seen = record(c);
  await c.opened();
  await ferry.restart();
  await eventually("the restart's close", () => seen.closes.length >= 1);
  assert.equal(seen.closes[0].code, 1012);
  assert.equal(seen.closes[0].origin, "server");
  assert.equal(seen.closes[0].willReconnect, true);
  await eventually("back", () => seen.opens.length === 2);
});

for (const [name, make, code] of [
  ["Unauthorized", () => new Unauthorized("session revoked"), 3000],
  ["StopReconnecting", () => new StopReconnecting("user signed out"), 1000],
]) {
  test(`token() throwing ${name} stops reconnecting`, async () => {
    const token = await ferry.token("kemal4");
    let calls = 0;
    const c = client("kemal4", async () => {
      if (++calls === 1) return token;
      throw make();
    });
    const seen = record(c);
    await c.opened();
    // The server goes away; the next attempt asks for a token and is told to stop.
    await ferry.restart();
    await eventually("the final close", () => seen.closes.some((x) => !x.willReconnect));
    const last = seen.closes.at(-1);
    assert.equal(last.origin, "client");
    assert.equal(last.code, code);
    assert.equal(last.willReconnect, false);
    assert.match(last.meaning, new RegExp(`${name} from token\\(\\): not reconnecting`));
    assert.equal(c.state, "closed");
    assert.equal(seen.errors.at(-1)?.name, name);
    const callsAtStop = calls;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(calls, callsAtStop, "token() is not called again");
    assert.equal(calls, 2);
    await assert.rejects(c.opened(), /closed/);
  });
}

test("any other error thrown by token() is retried until a token comes", async () => {
  const token = await ferry.token("lina5");
  let calls = 0;
  const c = client("lina5", async () => {
    if (++calls <= 3) throw new Error("token service down");
    return token;
  });
  const seen = record(c);
  await c.opened();
  assert.equal(calls, 4);
  assert.equal(seen.closes.length, 3);
  assert.ok(seen.closes.every((x) => x.willReconnect && x.origin === "network"), JSON.stringify(seen.closes));
  assert.deepEqual(
    seen.errors.map((e) => e.message),
    ["token service down", "token service down", "token service down"],
  );
});
