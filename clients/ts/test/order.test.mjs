// Ordering alone (no server): exactly once, in seq order, whatever the arrival order.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Ordering } from "../dist/order.js";

const msg = (convId, seq) => ({ convId, seq, text: `${convId}#${seq}` });

test("duplicates are dropped and early arrivals wait for the gap", () => {
  const out = [];
  const o = new Ordering((m) => out.push(m.seq));
  o.track("c", 0);
  for (const s of [1, 3, 1, 4, 2, 3, 5]) o.offer(msg("c", s));
  assert.deepEqual(out, [1, 2, 3, 4, 5]);
  assert.deepEqual(o.snapshot(), { c: 5 });
});

test("missing seqs are listed, and skipping delivers what waited behind them", () => {
  const out = [];
  const o = new Ordering((m) => out.push(m.seq));
  o.track("c", 2);
  o.offer(msg("c", 6));
  assert.deepEqual(out, []);
  assert.deepEqual(o.missing("c"), [3, 4, 5]);
  o.raise("c", 0, 8);
  assert.deepEqual(o.missing("c"), [3, 4, 5, 7, 8]);
  assert.deepEqual(o.skipTo("c", 5), [3, 4, 5]);
  assert.deepEqual(out, [6]);
  assert.deepEqual(o.missing("c"), [7, 8]);
});

test("a new conversation starts at its first message; minSeq skips what cannot be read", () => {
  const out = [];
  const o = new Ordering((m) => out.push(`${m.convId}${m.seq}`));
  o.offer(msg("a", 7));
  o.offer(msg("a", 6));
  o.offer(msg("a", 8));
  o.track("b", 0);
  o.raise("b", 4, 5);
  assert.deepEqual(o.missing("b"), [4, 5]);
  assert.deepEqual(out, ["a7", "a8"]);
});
