// The library against a real ferry: every request, pushes, notices and their ack,
// error codes, close codes, and a listen-only client kept alive by server pings.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { connect, ClientCode, ResponseCode } from "../dist/index.js";
import { Ferry, eventually, record } from "./support.mjs";

/** Short, so that 3× it fits in a test; long enough for a loaded machine. */
const IDLE_SECS = 2;

let ferry;
let upstream;
const clients = [];

function client(userId, token, extra = {}) {
  const c = connect({ url: ferry.wsUrl, token, userId, reconnect: { minDelayMs: 200, maxDelayMs: 1000 }, ...extra });
  clients.push(c);
  return c;
}

async function online(userId, extra) {
  const c = client(userId, await ferry.token(userId), extra);
  const seen = record(c);
  await c.opened();
  return { c, seen };
}

before(async () => {
  // A CustomRequest upstream that echoes the body with the caller's user id.
  upstream = createServer((req, res) => {
    const chunks = [];
    req.on("data", (d) => chunks.push(d));
    req.on("end", () => {
      const answer = () => res.end(`${req.headers["x-ferry-user-id"]}:${Buffer.concat(chunks).toString()}`);
      // /echo/slow answers after the client's timeout (and before ferry's upstream timeout).
      if (req.url.includes("slow")) setTimeout(answer, 1500);
      else answer();
    });
  });
  await new Promise((r) => upstream.listen(0, "127.0.0.1", r));
  ferry = new Ferry({
    env: {
      FERRY_SESSION__IDLE_TIMEOUT_SECS: String(IDLE_SECS),
      FERRY_PIPELINE__NOTICE_REPUSH_SECS: "1",
    },
  });
  const config = join(ferry.dataDir, "ferry.toml");
  writeFileSync(
    config,
    `[custom]\ntimeout_ms = 2000\nroutes = { "/echo" = "http://127.0.0.1:${upstream.address().port}", "/down" = "http://127.0.0.1:9" }\n`,
  );
  ferry.env.FERRY_CONFIG = config;
  await ferry.start();
});

after(async () => {
  for (const c of clients) c.close();
  await ferry?.dispose();
  upstream?.close();
});

test("send pushes to both sides, and every read request answers", async () => {
  const { c: alice, seen: a } = await online("alice1");
  const { c: bob, seen: b } = await online("bob1");
  const conv = "single:alice1-bob1";
  const { clientMsgId } = await alice.send({ convId: conv, content: "hello bob" });
  await alice.send({ convId: conv, content: "second" });
  await eventually("bob to get both", () => b.messages.length === 2);
  await eventually("alice to get her own", () => a.messages.length === 2);
  assert.deepEqual(b.messages.map((m) => [m.seq, m.text, m.senderId]), [
    [1, "hello bob", "alice1"],
    [2, "second", "alice1"],
  ]);
  assert.equal(b.messages[0].clientMsgId, clientMsgId);

  const seqs = await bob.syncConvSeq([conv, "single:x1-y1"]);
  assert.equal(seqs[conv].maxSeq, 2);
  assert.equal(seqs[conv].minSeq, 0);
  assert.ok(seqs[conv].updateTime > 0);
  assert.equal(seqs["single:x1-y1"].maxSeq, 0, "a conversation bob is not in tells nothing");

  const list = await bob.syncMsgList([{ convId: conv, seqs: [1, 2] }]);
  assert.deepEqual(list.map((m) => m.text), ["hello bob", "second"]);

  const byServer = await bob.getMsgById({ serverMsgId: b.messages[1].serverMsgId });
  assert.equal(byServer.text, "second");
  const byClient = await bob.getMsgById({ clientMsgId });
  assert.equal(byClient.seq, 1);
  assert.equal(await bob.getMsgById({ serverMsgId: "single:alice1-bob1-99" }), undefined);

  const echoed = await bob.custom("/echo/hi", new TextEncoder().encode("ping"));
  assert.equal(new TextDecoder().decode(echoed), "bob1:ping");
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test("a delayed send arrives after its delay", async () => {
  const { c: alice } = await online("alice2");
  const { seen: b } = await online("bob2");
  const sent = Date.now();
  await alice.send({ convId: "single:alice2-bob2", content: "later", deliverAfter: 2 });
  await eventually("the delayed message", () => b.messages.length === 1, 20000);
  assert.ok(Date.now() - sent >= 2000, `arrived after ${Date.now() - sent} ms`);
  assert.equal(b.messages[0].text, "later");
});

test("failures reject with the server's code and message", async () => {
  const { c: carol } = await online("carol3");
  const cases = [
    [() => carol.send({ convId: "single:x3-y3", content: "no" }), ResponseCode.RequestError, /may not send to/],
    [() => carol.send({ convId: "nonsense", content: "no" }), ResponseCode.RequestError, /invalid convId/],
    [
      () => carol.send({ convId: "single:carol3-d3", content: "no", deliverAfter: 864001 }),
      ResponseCode.RequestError,
      /at most 864000/,
    ],
    [() => carol.getMsgById({}), ResponseCode.RequestError, /give serverMsgId or clientMsgId/],
    [() => carol.syncMsgList([{ convId: "single:carol3-d3", seqs: Array(1001).fill(1) }]), ResponseCode.RequestError, /at most 1000 seqs/],
    [() => carol.ackNotice("notice:X", ""), ResponseCode.RequestError, /noticeId is required/],
    [() => carol.custom("/nowhere"), ResponseCode.RequestError, /unknown method/],
    [() => carol.custom("/down/x"), ResponseCode.RetryError, /unreachable/],
  ];
  for (const [call, code, msg] of cases) {
    await assert.rejects(call, (e) => {
      assert.equal(e.name, "FerryError");
      assert.equal(e.code, code, e.message);
      assert.match(e.message, msg);
      assert.equal(e.codeName, ResponseCode[code]);
      return true;
    });
  }
  // The connection survives every failure.
  assert.equal(carol.state, "open");
  await carol.send({ convId: "single:carol3-d3", content: "still fine" });
});

test("a request times out, and requests while closed are refused", async () => {
  const { c } = await online("dave4", { requestTimeoutMs: 300 });
  await assert.rejects(c.custom("/echo/slow"), (e) => e.code === ClientCode.Timeout && e.retryable);
  // The late answer is dropped; the connection goes on.
  assert.deepEqual(await c.syncConvSeq(["single:dave4-e4"]), {
    "single:dave4-e4": { minSeq: 0, maxSeq: 0, updateTime: 0 },
  });
  c.close();
  await eventually("closed", () => c.state === "closed");
  await assert.rejects(c.syncConvSeq(["single:dave4-e4"]), (e) => e.code === ClientCode.NotConnected);
});

test("notices arrive until acked", async () => {
  const { c: erin, seen } = await online("erin5");
  await ferry.api("POST", "/notices", {
    userIds: ["erin5"],
    notice: { convId: "notice:FriendNotice", noticeId: "n-1", title: "friend request" },
  });
  // Pushed again every second while pending.
  await eventually("the notice, twice", () => seen.notices.length >= 2);
  const n = seen.notices[0];
  assert.deepEqual([n.convId, n.noticeId, n.title], ["notice:FriendNotice", "n-1", "friend request"]);
  await erin.ackNotice(n.convId, n.noticeId);
  // Unacked, it would come every second: a quiet 3 s proves the ack took.
  let count = seen.notices.length;
  let quietSince = Date.now();
  await eventually("3 s without the notice", () => {
    if (seen.notices.length !== count) {
      count = seen.notices.length;
      quietSince = Date.now();
    }
    return Date.now() - quietSince >= 3000;
  });
});

test("close codes: bad token, kicked, replaced", async () => {
  const bad = client("frank6", "not-a-jwt");
  const badSeen = record(bad);
  await assert.rejects(bad.opened());
  assert.equal(badSeen.closes[0].code, 3000);
  assert.match(badSeen.closes[0].meaning, /log in again/);
  assert.equal(badSeen.closes[0].willReconnect, false);
  assert.equal(bad.state, "closed");

  const { c: kicked, seen: k } = await online("gina6");
  await ferry.api("POST", "/users/gina6/kick", {});
  await eventually("the kick", () => k.closes.length === 1);
  assert.equal(k.closes[0].code, 1001);
  assert.match(k.closes[0].meaning, /kicked/);
  assert.equal(kicked.state, "closed");

  const token = await ferry.token("hank6");
  const first = client("hank6", token, { deviceId: "laptop" });
  const firstSeen = record(first);
  await first.opened();
  const second = client("hank6", token, { deviceId: "laptop" });
  await second.opened();
  await eventually("the replacement", () => firstSeen.closes.length === 1);
  assert.equal(firstSeen.closes[0].code, 1000);
  assert.match(firstSeen.closes[0].meaning, /replaced/);
  assert.equal(first.state, "closed");
  assert.equal(second.state, "open");
});

test("a listen-only client stays connected past 3x the idle timeout", async () => {
  const { c: ivy, seen } = await online("ivy7");
  const { c: jon } = await online("jon7");
  const started = Date.now();
  // ivy sends nothing at all; jon keeps his socket busy only at the start and end.
  await new Promise((r) => setTimeout(r, 3 * IDLE_SECS * 1000 + 500));
  assert.ok(Date.now() - started > 3 * IDLE_SECS * 1000);
  assert.deepEqual(seen.closes, [], "ivy was never disconnected");
  assert.equal(ivy.state, "open");
  assert.equal(seen.opens.length, 1, "ivy never reconnected");
  await jon.send({ convId: "single:ivy7-jon7", content: "still there?" });
  await eventually("ivy to hear jon", () => seen.messages.length === 1);
});
