// The WebSocket implementation can be injected: here the `ws` package, with no
// global WebSocket involved.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import WS from "ws";

import { connect } from "../dist/index.js";
import { Ferry, eventually, record } from "./support.mjs";

let ferry;
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  await ferry?.dispose();
});

test("an injected WebSocket constructor is used", async () => {
  ferry = await new Ferry().start();
  let made = 0;
  class Counted extends WS {
    constructor(url) {
      super(url);
      made++;
    }
  }
  const nora = connect({ url: ferry.wsUrl, token: await ferry.token("nora"), userId: "nora", WebSocket: Counted });
  const otto = connect({ url: ferry.wsUrl, token: await ferry.token("otto"), userId: "otto", WebSocket: WS });
  clients.push(nora, otto);
  const seen = record(otto);
  await Promise.all([nora.opened(), otto.opened()]);
  assert.equal(made, 1);
  await nora.send({ convId: "single:nora-otto", content: "over ws" });
  await eventually("otto to hear nora", () => seen.messages.length === 1);
  assert.equal(seen.messages[0].text, "over ws");
});
