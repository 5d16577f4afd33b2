// Conversation discovery (ferry's DiscoverConvs extension, docs/conversation-discovery.md):
// after every (re)connect the client asks which of its conversations changed after
// the cursor of its last answer, page by page until `more` is false, so that a
// conversation that started while it was offline (a first message from a new peer,
// a group it was added to) is found and followed like the others.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import * as pb from "./gen/gateway_pb.js";
import { FerryError } from "./errors.js";

export interface DiscoveryOptions {
  /** The cursor of an earlier run (persist `client.discoveryCursor` to resume across restarts). */
  cursor?: string;
  /** Conversations per page; 0 (default): the server's bound. */
  pageSize?: number;
  /**
   * A second run this long after each (re)connect, default 3 000 ms (0: none). The
   * server lists a change once its sequencer has checkpointed it (on Kafka within
   * about a second): a change made just before the connect, whose push went to the
   * socket that was gone, is found by this run rather than at the next reconnect.
   */
  settleMs?: number;
}

export const DEFAULT_SETTLE_MS = 3_000;

/** One conversation of a discovery answer. */
export interface DiscoveredConv {
  convId: string;
  /** The first seq this user may read (0: from the start). */
  minSeq: number;
  maxSeq: number;
  /** Milliseconds since the epoch. */
  updateTime: number;
  /** A group this user no longer belongs to: hide it. */
  removed: boolean;
  /** True when the client did not follow this conversation before. */
  isNew: boolean;
}

/** A guard against a server that never says "no more": pages per run. */
const MAX_PAGES = 10_000;

export interface DiscoveryIo {
  request(event: pb.ActiveEvent, data: Uint8Array): Promise<Uint8Array>;
  /** Whether the conversation is followed now. */
  follows(convId: string): boolean;
  /** One conversation of an answer, in the order of the answer. */
  found(conv: DiscoveredConv, fromCursor: boolean): void;
}

export class Discovery {
  private cursor: string;
  private readonly pageSize: number;
  /** False once the server said it does not know the event (an older ferry). */
  private supported = true;
  private running: Promise<void> | undefined;

  constructor(
    options: DiscoveryOptions,
    private readonly io: DiscoveryIo,
  ) {
    this.cursor = options.cursor ?? "";
    this.pageSize = options.pageSize ?? 0;
  }

  /** The cursor to resume from ("" before the first answer). */
  get position(): string {
    return this.cursor;
  }

  /** Pages until the server has nothing more; one run at a time. */
  run(): Promise<void> {
    if (!this.supported) return Promise.resolve();
    this.running ??= this.pages().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pages(): Promise<void> {
    for (let page = 0; page < MAX_PAGES; page++) {
      const fromCursor = this.cursor !== "";
      let data: Uint8Array;
      try {
        const req = create(pb.DiscoverConvsReqSchema, { cursor: this.cursor, limit: this.pageSize });
        data = await this.io.request(pb.ActiveEvent.DiscoverConvs, toBinary(pb.DiscoverConvsReqSchema, req));
      } catch (e) {
        if (e instanceof FerryError && /unknown event/.test(e.message)) {
          this.supported = false;
          return;
        }
        throw e;
      }
      const resp = fromBinary(pb.DiscoverConvsRespSchema, data);
      for (const c of resp.convs) {
        this.io.found(
          {
            convId: c.convId,
            minSeq: Number(c.minSeq) || 0,
            maxSeq: Number(c.maxSeq) || 0,
            updateTime: Number(c.updateTime) || 0,
            removed: c.removed,
            isNew: !this.io.follows(c.convId),
          },
          fromCursor,
        );
      }
      // The cursor moves only once the page is handled: a page lost to a dropped
      // socket is asked for again on the next connect.
      const moved = resp.cursor !== "" && resp.cursor !== this.cursor;
      if (resp.cursor) this.cursor = resp.cursor;
      if (!resp.more || !moved) return;
    }
  }
}
