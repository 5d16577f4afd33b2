// Catch-up: asks where each followed conversation is, then fetches what is missing,
// one fill per conversation at a time.

import type * as pb from "./gen/gateway_pb.js";
import { FerryError } from "./errors.js";
import { isPlaceholder, toChatMessage } from "./order.js";
import type { Ordering } from "./order.js";

/** Seqs asked for per SyncMsgList / convIds per SyncConvSeq (below the server's limits). */
export const SYNC_CHUNK = 500;
/** Catch-up retries for a seq that stays missing before it is given up on. */
const FILL_RETRIES = 6;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CatchUpIo {
  isOpen(): boolean;
  convSeqs(convs: string[]): Promise<Record<string, { minSeq: number; maxSeq: number }>>;
  messages(conv: string, seqs: number[]): Promise<pb.MsgData[]>;
  gap(convId: string, seqs: number[]): void;
  error(e: Error): void;
}

export class CatchUp {
  private filling = new Set<string>();
  private refill = new Set<string>();

  constructor(
    private readonly order: Ordering,
    private readonly io: CatchUpIo,
  ) {}

  /** Asks where each conversation is, then fetches what is missing. */
  async run(convs: string[]): Promise<void> {
    try {
      for (let i = 0; i < convs.length; i += SYNC_CHUNK) {
        const seqs = await this.io.convSeqs(convs.slice(i, i + SYNC_CHUNK));
        for (const [conv, s] of Object.entries(seqs)) this.order.raise(conv, s.minSeq, s.maxSeq);
      }
    } catch (e) {
      // The next reconnect starts over; a closed socket is not an error of its own.
      if (!(e instanceof FerryError && e.retryable)) this.io.error(e as Error);
      return;
    }
    for (const c of convs) if (this.order.missing(c, 1).length) this.fill(c);
  }

  /** One fill per conversation at a time; a request for another while one runs is remembered. */
  fill(conv: string): void {
    if (this.filling.has(conv)) {
      this.refill.add(conv);
      return;
    }
    this.filling.add(conv);
    this.fillOnce(conv)
      .catch((e) => {
        if (!(e instanceof FerryError && e.retryable)) this.io.error(e as Error);
      })
      .finally(() => {
        this.filling.delete(conv);
        if (this.refill.delete(conv) && this.io.isOpen() && this.order.missing(conv, 1).length) {
          this.fill(conv);
        }
      });
  }

  private async fillOnce(conv: string): Promise<void> {
    let stuck = 0;
    for (;;) {
      const want = this.order.missing(conv, SYNC_CHUNK);
      if (!want.length || !this.io.isOpen()) return;
      for (const m of await this.io.messages(conv, want)) {
        if (!isPlaceholder(m)) this.order.offer(toChatMessage(m));
      }
      const still = this.order.missing(conv, 1);
      if (!still.length) return;
      if (still[0] !== want[0]) {
        stuck = 0;
        continue;
      }
      // Claimed but not yet stored, most likely: give the sequencer a moment.
      if (++stuck > FILL_RETRIES) {
        const seqs = this.order.skipTo(conv, still[0]);
        if (seqs.length) this.io.gap(conv, seqs);
        stuck = 0;
        continue;
      }
      await sleep(50 * 2 ** stuck);
    }
  }
}
