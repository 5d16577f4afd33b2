// Reconnect and catch-up: the server is restarted in the middle of a conversation,
// messages are sent while the listener is away, and the listener still sees every
// message exactly once, in seq order.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { connect } from "../dist/index.js";
import { Ferry, eventually, record } from "./support.mjs";

const RESTART_AFTER = 10;
const AWAY_UNTIL = 20;
const TOTAL = 25;

let ferry;
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  await ferry?.dispose();
});

test("after a server restart the client catches up: no loss, no duplicate, in order", async () => {
  ferry = await new Ferry().start();
  const conv = "single:lena-mark";
  const tokens = { lena: await ferry.token("lena"), mark: await ferry.token("mark") };

  // Lena may reconnect only when the test says so, so that messages are certainly
  // sequenced while she is away.
  let letLenaBack;
  const lenaBack = new Promise((r) => (letLenaBack = r));
  let lenaAttempts = 0;
  const lena = connect({
    url: ferry.wsUrl,
    userId: "lena",
    token: async () => {
      if (lenaAttempts++ > 0) await lenaBack;
      return tokens.lena;
    },
    reconnect: { minDelayMs: 100, maxDelayMs: 500 },
  });
  const mark = connect({
    url: ferry.wsUrl,
    userId: "mark",
    token: tokens.mark,
    reconnect: { minDelayMs: 100, maxDelayMs: 500 },
  });
  clients.push(lena, mark);
  const seen = record(lena);
  await Promise.all([lena.opened(), mark.opened()]);

  // Mark sends m1..m20 one after another; each is retried with the same clientMsgId
  // until the server accepts it (the server drops a retry it already sequenced).
  let accepted = 0;
  const sendRange = async (from, to) => {
    for (let i = from; i <= to; i++) {
      for (;;) {
        try {
          await mark.send({ convId: conv, content: `m${i}`, clientMsgId: `mark-${i}` });
          accepted = i;
          break;
        } catch (e) {
          if (!e.retryable) throw e;
          await mark.opened().catch(() => {});
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      // Slow enough that the restart falls in the middle of the conversation.
      await new Promise((r) => setTimeout(r, 30));
    }
  };
  const firstPart = sendRange(1, AWAY_UNTIL);

  await eventually("lena to have the first messages", () => seen.messages.length >= RESTART_AFTER);
  await ferry.restart();
  await eventually("more messages accepted while lena is away", () => accepted >= AWAY_UNTIL, 60000);
  assert.equal(lena.state, "reconnecting", "lena stayed away");
  const heardBeforeReturn = seen.messages.length;
  await firstPart;
  letLenaBack();
  // Nothing new is sent now: only the catch-up can bring m11..m20.
  await eventually("lena to catch up", () => seen.messages.length >= AWAY_UNTIL, 30000);
  await sendRange(AWAY_UNTIL + 1, TOTAL);
  await eventually(`lena to have all ${TOTAL}`, () => seen.messages.length >= TOTAL, 30000);
  // Anything duplicated would arrive right behind; give it a moment to show.
  await new Promise((r) => setTimeout(r, 500));

  assert.ok(heardBeforeReturn < AWAY_UNTIL, `lena had heard ${heardBeforeReturn} before returning`);
  assert.deepEqual(
    seen.messages.map((m) => m.text),
    Array.from({ length: TOTAL }, (_, i) => `m${i + 1}`),
  );
  assert.deepEqual(
    seen.messages.map((m) => m.seq),
    Array.from({ length: TOTAL }, (_, i) => i + 1),
  );
  assert.equal(seen.opens.length, 2);
  assert.equal(seen.opens[1].reconnected, true);
  assert.ok(seen.closes.some((c) => c.code === 1012 && c.willReconnect), JSON.stringify(seen.closes));
  assert.deepEqual(seen.gaps, []);
  assert.deepEqual(lena.lastSeqs(), { [conv]: TOTAL });
});
