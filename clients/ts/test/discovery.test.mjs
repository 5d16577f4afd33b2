// Conversation discovery after a reconnect: a conversation that starts while the
// client is offline (a first message from a new peer) and a group the user is added
// to while offline are found, announced as new and delivered in full; a group the
// user is removed from comes back as removed.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { connect } from "../dist/index.js";
import { StallingProxy } from "./proxy.mjs";
import { Ferry, eventually, record } from "./support.mjs";

let ferry;
let proxy;
const clients = [];

before(async () => {
  ferry = await new Ferry().start();
  proxy = await new StallingProxy(ferry.port).listen();
});

after(async () => {
  for (const c of clients) c.close();
  await proxy?.close();
  await ferry?.dispose();
});

async function online(userId, url, extra = {}) {
  const token = await ferry.token(userId);
  const c = connect({ url, token, userId, reconnect: { minDelayMs: 100, maxDelayMs: 300 }, ...extra });
  clients.push(c);
  const seen = record(c);
  const convs = [];
  c.on("conversation", (x) => convs.push(x));
  await c.opened();
  return { c, seen, convs };
}

test("conversations started and groups joined while offline are found after the reconnect", async () => {
  const { c: carol } = await online("carol", ferry.wsUrl);
  const { c: dave } = await online("dave", ferry.wsUrl);
  // Bob knows one conversation (with dave) and is in group g_old.
  await ferry.api("PUT", "/groups/g_old/members/bob", {});
  await ferry.api("PUT", "/groups/g_old/members/dave", {});
  await dave.send({ convId: "single:bob-dave", content: "known" });
  // Bob's app already follows the conversation with dave (from its own storage).
  const { c: bob, seen: b, convs } = await online("bob", proxy.wsUrl, { lastSeqs: { "single:bob-dave": 0 } });
  // A change is listed once the sequencer has checkpointed it: ask until it is.
  await eventually("bob's first discovery", async () => {
    await bob.discover();
    return convs.some((x) => x.convId === "single:bob-dave");
  });
  assert.equal(convs.find((x) => x.convId === "single:bob-dave").isNew, false);
  await eventually("the known message", () => b.messages.length === 1);
  await bob.discover();
  const cursorBefore = bob.discoveryCursor;
  assert.notEqual(cursorBefore, "");

  // Bob's link drops and stays down while the world moves on.
  proxy.refusing = true;
  proxy.cut();
  await eventually("bob away", () => bob.state === "reconnecting");
  await carol.send({ convId: "single:bob-carol", content: "first ever, 1" });
  await carol.send({ convId: "single:bob-carol", content: "first ever, 2" });
  await ferry.api("PUT", "/groups/g_new/members/carol", {});
  await ferry.api("PUT", "/groups/g_new/members/bob", {});
  await carol.send({ convId: "group:g_new", content: "welcome bob" });
  await ferry.api("DELETE", "/groups/g_old/members/bob");
  const seenBefore = b.messages.length;
  const convsBefore = convs.length;
  proxy.refusing = false;

  await eventually("bob back", () => b.opens.length === 2, 20_000);
  await eventually(
    "the new conversations' messages",
    () => b.messages.length === seenBefore + 3,
    20_000,
  );
  const found = convs.slice(convsBefore);
  const byId = Object.fromEntries(found.map((x) => [x.convId, x]));
  assert.equal(byId["single:bob-carol"]?.isNew, true, JSON.stringify(found));
  assert.equal(byId["single:bob-carol"].maxSeq, 2);
  assert.equal(byId["group:g_new"]?.isNew, true, JSON.stringify(found));
  assert.equal(byId["group:g_new"].removed, false);
  assert.equal(byId["group:g_old"]?.removed, true, JSON.stringify(found));
  assert.deepEqual(
    b.messages.slice(seenBefore).map((m) => [m.convId, m.seq, m.text]).sort(),
    [
      ["group:g_new", 1, "welcome bob"],
      ["single:bob-carol", 1, "first ever, 1"],
      ["single:bob-carol", 2, "first ever, 2"],
    ],
  );
  assert.ok(bob.lastSeqs()["single:bob-carol"] === 2 && !("group:g_old" in bob.lastSeqs()));
  assert.notEqual(bob.discoveryCursor, cursorBefore);
  assert.deepEqual(b.errors, []);
  assert.deepEqual(b.gaps, []);
});

test("a client with discovery off behaves as before: nothing is announced", async () => {
  const { c: erin } = await online("erin", ferry.wsUrl);
  await erin.send({ convId: "single:erin-fred", content: "hello" });
  const { c: fred, seen, convs } = await online("fred", ferry.wsUrl, { discovery: false });
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(convs, []);
  assert.deepEqual(seen.messages, []);
  assert.equal(fred.discoveryCursor, "");
});
