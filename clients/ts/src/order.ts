// Per-conversation ordering: every message reaches the app exactly once and in seq
// order, whether it came as a push, as a catch-up after a reconnect, or both.

import type { MsgData } from "./gen/gateway_pb.js";

/** A message as the app sees it. */
export interface ChatMessage {
  convId: string;
  seq: number;
  serverMsgId: string;
  clientMsgId: string;
  senderId: string;
  contentType: number;
  content: Uint8Array;
  /** `content` decoded as UTF-8 (text messages). */
  text: string;
  /** Milliseconds since the epoch (0 when unknown). */
  serverTime: number;
  clientTime: number;
  atUsers: string[];
  /** The message as it came off the wire. */
  raw: MsgData;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

export function toChatMessage(m: MsgData): ChatMessage {
  return {
    convId: m.convId,
    seq: Number(m.seq),
    serverMsgId: m.serverMsgId,
    clientMsgId: m.clientMsgId,
    senderId: m.senderId,
    contentType: m.contentType,
    content: m.content,
    text: utf8.decode(m.content),
    serverTime: Number(m.serverTime) || 0,
    clientTime: Number(m.clientTime) || 0,
    atUsers: m.atUsers,
    raw: m,
  };
}

/**
 * What SyncMsgList answers for a seq that is claimed but not (yet) stored: the
 * sequencer claims seqs before it writes the messages, so a catch-up can see one
 * for a moment. It is never delivered; the real message is fetched again.
 */
export function isPlaceholder(m: MsgData): boolean {
  return m.senderId === "" && (m.serverTime === "" || m.serverTime === "0");
}

interface Conv {
  /** The last seq handed to the app. */
  delivered: number;
  /** The highest seq known to exist. */
  highest: number;
  /** Received ahead of a gap. */
  ahead: Map<number, ChatMessage>;
}

export class Ordering {
  private convs = new Map<string, Conv>();

  constructor(private readonly deliver: (m: ChatMessage) => void) {}

  /** Conversations being followed, with the last seq delivered in each. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, c] of this.convs) out[id] = c.delivered;
    return out;
  }

  has(convId: string): boolean {
    return this.convs.has(convId);
  }

  /** Follows `convId` from `afterSeq` on (kept when already followed). */
  track(convId: string, afterSeq: number): void {
    if (!this.convs.has(convId)) {
      this.convs.set(convId, { delivered: afterSeq, highest: afterSeq, ahead: new Map() });
    }
  }

  /** Stops following `convId` (a group left): later messages of it start it again. */
  forget(convId: string): void {
    this.convs.delete(convId);
  }

  /**
   * Takes a message from any source. A conversation seen for the first time starts
   * at that message (history is the app's choice: `track` it first to get more).
   */
  offer(m: ChatMessage): void {
    if (!Number.isSafeInteger(m.seq) || m.seq <= 0) return;
    this.track(m.convId, m.seq - 1);
    const c = this.convs.get(m.convId)!;
    if (m.seq <= c.delivered || c.ahead.has(m.seq)) return;
    c.ahead.set(m.seq, m);
    c.highest = Math.max(c.highest, m.seq);
    this.drain(c);
  }

  /** The server says `convId` reaches `maxSeq`, and nothing below `minSeq` is readable. */
  raise(convId: string, minSeq: number, maxSeq: number): void {
    const c = this.convs.get(convId);
    if (!c) return;
    c.highest = Math.max(c.highest, maxSeq);
    if (minSeq > c.delivered + 1) this.skipTo(convId, minSeq - 1);
  }

  /** Seqs known to exist that have not arrived, oldest first. */
  missing(convId: string, max = Infinity): number[] {
    const c = this.convs.get(convId);
    const out: number[] = [];
    if (!c) return out;
    for (let s = c.delivered + 1; s <= c.highest && out.length < max; s++) {
      if (!c.ahead.has(s)) out.push(s);
    }
    return out;
  }

  /** Gives up on everything up to `seq` that has not arrived; returns what was skipped. */
  skipTo(convId: string, seq: number): number[] {
    const c = this.convs.get(convId);
    if (!c) return [];
    const skipped: number[] = [];
    while (c.delivered < seq) {
      const next = c.delivered + 1;
      const m = c.ahead.get(next);
      if (m) {
        c.ahead.delete(next);
        this.deliver(m);
      } else {
        skipped.push(next);
      }
      c.delivered = next;
    }
    c.highest = Math.max(c.highest, c.delivered);
    this.drain(c);
    return skipped;
  }

  private drain(c: Conv): void {
    for (;;) {
      const m = c.ahead.get(c.delivered + 1);
      if (!m) return;
      c.ahead.delete(m.seq);
      c.delivered = m.seq;
      this.deliver(m);
    }
  }
}
