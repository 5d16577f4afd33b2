// The connection: one socket at a time, requests as promises, pushes as events,
// reconnect with jittered backoff, and catch-up after every reconnect.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";

import * as pb from "./gen/gateway_pb.js";
import { ActiveEvent, PushEvent, ResponseBody_Code } from "./gen/gateway_pb.js";
import { Emitter } from "./emitter.js";
import { ClientCode, FerryError, describeClose } from "./errors.js";
import type { CloseInfo } from "./errors.js";
import { Ordering, isPlaceholder, toChatMessage } from "./order.js";
import type { ChatMessage } from "./order.js";
import { OPEN, defaultWebSocket, frameBytes } from "./socket.js";
import type { WebSocketConstructor, WebSocketLike } from "./socket.js";

export interface ConnectOptions {
  /** The gateway's WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`. */
  url: string;
  /** The JWT, or a function returning one (called before every connection attempt). */
  token: string | (() => string | Promise<string>);
  userId: string;
  /** Default "web". */
  platform?: string;
  /** Default: a random id per client. */
  deviceId?: string;
  /** Sent as query parameters (networkUsed, deviceModel, osVersion, appVersion, language). */
  meta?: Partial<Record<"networkUsed" | "deviceModel" | "osVersion" | "appVersion" | "language", string>>;
  /** A WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Per request; default 10 000 ms. */
  requestTimeoutMs?: number;
  /** Wait for the server's `connected`; default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Reconnect backoff bounds, or false to never reconnect. Default 500 ms … 15 000 ms. */
  reconnect?: false | { minDelayMs?: number; maxDelayMs?: number };
  /** Conversations to follow from the start, with the last seq the app already has. */
  lastSeqs?: Record<string, number>;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface Notice {
  convId: string;
  noticeId: string;
  title: string;
  contentType: number;
  content: Uint8Array;
  unreadCount: number;
  unreadAbsolute: boolean;
  /** Milliseconds since the epoch. */
  createTime: number;
  raw: pb.NoticeData;
}

export interface FerryEvents {
  state: { state: ConnectionState; attempt: number };
  open: { reconnected: boolean };
  close: CloseInfo & { willReconnect: boolean; retryInMs?: number };
  /** Every message exactly once, in seq order per conversation. */
  message: ChatMessage;
  /** Pending notices are pushed again until acked. */
  notice: Notice;
  /** Seqs given up on: claimed by the server but never readable. */
  gap: { convId: string; seqs: number[] };
  error: Error;
}

export interface SendInput {
  convId: string;
  /** A string is sent as UTF-8. */
  content: string | Uint8Array;
  /** Default 11 (text, as `ferry client send` uses). */
  contentType?: number;
  /** Default: a random id (the server deduplicates retries by it). */
  clientMsgId?: string;
  /** Seconds until delivery, 0 … 864 000. */
  deliverAfter?: number;
  atUsers?: string[];
}

export interface ConvSeq {
  minSeq: number;
  maxSeq: number;
  /** Milliseconds since the epoch. */
  updateTime: number;
}

export interface SyncItem {
  convId: string;
  seqs: number[];
}

interface Pending {
  event: ActiveEvent;
  resolve: (data: Uint8Array) => void;
  reject: (e: FerryError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Seqs asked for per SyncMsgList / convIds per SyncConvSeq (below the server's limits). */
const SYNC_CHUNK = 500;
/** Catch-up retries for a seq that stays missing before it is given up on. */
const FILL_RETRIES = 6;

const utf8 = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID().replace(/-/g, "");
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

/** Connects and returns at once; listen for events, then `await client.opened()`. */
export function connect(options: ConnectOptions): FerryClient {
  return new FerryClient(options);
}

export class FerryClient extends Emitter<FerryEvents> {
  readonly userId: string;
  readonly deviceId: string;
  private readonly opts: ConnectOptions;
  private readonly WS: WebSocketConstructor;
  private ws: WebSocketLike | undefined;
  private _state: ConnectionState = "connecting";
  private attempt = 0;
  private everOpen = false;
  private stopped = false;
  private reqCounter = 0;
  private readonly reqPrefix = randomId().slice(0, 8);
  private pending = new Map<string, Pending>();
  private order: Ordering;
  private filling = new Set<string>();
  private refill = new Set<string>();
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(options: ConnectOptions) {
    super();
    this.opts = options;
    this.userId = options.userId;
    this.deviceId = options.deviceId ?? randomId();
    this.WS = options.WebSocket ?? defaultWebSocket();
    this.order = new Ordering((m) => this.emit("message", m));
    for (const [conv, seq] of Object.entries(options.lastSeqs ?? {})) this.order.track(conv, seq);
    // Started on the next tick, so listeners added right after connect() see everything.
    queueMicrotask(() => void this.open());
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Resolves once connected (now, or at the next successful (re)connect). */
  opened(): Promise<void> {
    if (this._state === "open") return Promise.resolve();
    if (this._state === "closed") return Promise.reject(new Error("client is closed"));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Closes for good: no reconnect. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close(1000, "");
    else this.setState("closed");
  }

  /** The last seq delivered per followed conversation (persist it to resume later). */
  lastSeqs(): Record<string, number> {
    return this.order.snapshot();
  }

  /** Follows a conversation from `afterSeq` on: what is missing is fetched now and after every reconnect. */
  track(convId: string, afterSeq = 0): void {
    this.order.track(convId, afterSeq);
    if (this._state === "open") void this.catchUp([convId]);
  }

  // --- requests -------------------------------------------------------------

  async send(input: SendInput): Promise<{ clientMsgId: string }> {
    const clientMsgId = input.clientMsgId ?? randomId();
    const content = typeof input.content === "string" ? utf8.encode(input.content) : input.content;
    const msg = create(pb.MsgDataSchema, {
      clientMsgId,
      clientTime: String(Date.now()),
      senderId: this.userId,
      convId: input.convId,
      contentType: input.contentType ?? 11,
      content,
      atUsers: input.atUsers ?? [],
      options: { storageForServer: true, storageForClient: true },
    });
    await this.call(ActiveEvent.SendMsgList, pb.SendMsgListReqSchema, {
      msgDataList: [msg],
      deliverAfter: input.deliverAfter,
    });
    return { clientMsgId };
  }

  async syncConvSeq(convIds: string[]): Promise<Record<string, ConvSeq>> {
    const data = await this.call(ActiveEvent.SyncConvSeq, pb.BatchGetConvSeqReqSchema, { convIdList: convIds });
    const resp = fromBinary(pb.BatchGetConvSeqRespSchema, data);
    const out: Record<string, ConvSeq> = {};
    for (const [conv, s] of Object.entries(resp.convSeqMap)) {
      out[conv] = { minSeq: Number(s.minSeq), maxSeq: Number(s.maxSeq), updateTime: Number(s.updateTime) };
    }
    return out;
  }

  /** Messages by seq; a seq claimed but not stored comes back with an empty senderId. */
  async syncMsgList(items: SyncItem[]): Promise<ChatMessage[]> {
    return (await this.syncRaw(items)).map(toChatMessage);
  }

  async getMsgById(id: { serverMsgId: string } | { clientMsgId: string }): Promise<ChatMessage | undefined> {
    const data = await this.call(ActiveEvent.GetMsgById, pb.GetMsgByIdReqSchema, id);
    const m = fromBinary(pb.GetMsgByIdRespSchema, data).msgData;
    return m ? toChatMessage(m) : undefined;
  }

  async ackNotice(convId: string, noticeId: string): Promise<void> {
    await this.call(ActiveEvent.AckNotice, pb.AckNoticeDataReqSchema, { convId, noticeId });
  }

  /** A CustomRequest: `method` picks the upstream; the upstream's body comes back. */
  async custom(method: string, data: Uint8Array = new Uint8Array()): Promise<Uint8Array> {
    return this.call(ActiveEvent.CustomRequest, pb.CustomRequestBodySchema, { method, data });
  }

  private async syncRaw(items: SyncItem[]): Promise<pb.MsgData[]> {
    const data = await this.call(ActiveEvent.SyncMsgList, pb.BatchGetMsgListByConvIdReqSchema, {
      items: items.map((i) => ({ convId: i.convId, seqList: i.seqs.map(String) })),
    });
    return fromBinary(pb.GetMsgListRespSchema, data).msgDataList;
  }

  private call<D extends DescMessage>(
    event: ActiveEvent,
    schema: D,
    init: MessageInitShape<D>,
  ): Promise<Uint8Array> {
    return this.request(event, toBinary(schema, create(schema, init)));
  }

  private request(event: ActiveEvent, data: Uint8Array): Promise<Uint8Array> {
    const reqId = `${this.reqPrefix}-${++this.reqCounter}`;
    const ws = this.ws;
    if (this._state !== "open" || !ws || ws.readyState !== OPEN) {
      return Promise.reject(new FerryError(ClientCode.NotConnected, "not connected", event, reqId));
    }
    const body = create(pb.RequestBodySchema, { event, reqId, data });
    return new Promise<Uint8Array>((resolve, reject) => {
      const ms = this.opts.requestTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new FerryError(ClientCode.Timeout, `no response within ${ms} ms`, event, reqId));
      }, ms);
      this.pending.set(reqId, { event, resolve, reject, timer });
      ws.send(toBinary(pb.RequestBodySchema, body));
    });
  }

  // --- the socket -------------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit("state", { state, attempt: this.attempt });
    if (state === "open") for (const w of this.waiters.splice(0)) w.resolve();
    if (state === "closed") for (const w of this.waiters.splice(0)) w.reject(new Error("client is closed"));
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    this.setState(this.everOpen ? "reconnecting" : "connecting");
    let token: string;
    try {
      token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
    } catch (e) {
      this.emit("error", e instanceof Error ? e : new Error(String(e)));
      this.closed(1006, "token unavailable");
      return;
    }
    if (this.stopped) {
      this.setState("closed");
      return;
    }
    const q = new URLSearchParams({
      token,
      userId: this.userId,
      platform: this.opts.platform ?? "web",
      deviceId: this.deviceId,
      ...this.opts.meta,
    });
    const sep = this.opts.url.includes("?") ? "&" : "?";
    let ws: WebSocketLike;
    try {
      ws = new this.WS(`${this.opts.url}${sep}${q}`);
    } catch (e) {
      this.emit("error", e instanceof Error ? e : new Error(String(e)));
      this.closed(1006, "cannot open socket");
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    // Ends this socket once, whichever of close, error or the timer comes first.
    const finish = (code: number, reason: string) => {
      clearTimeout(connectTimer);
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.closed(code, reason);
    };
    const connectTimer = setTimeout(() => {
      if (this.ws !== ws || this._state === "open") return;
      try {
        ws.close();
      } catch {
        // Already closing.
      }
      finish(1006, "connect timeout");
    }, this.opts.connectTimeoutMs ?? 10_000);
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === "string") {
        if (ev.data === "connected") {
          clearTimeout(connectTimer);
          this.connected();
        }
        return;
      }
      const bytes = frameBytes(ev.data);
      if (bytes) this.frame(bytes);
    };
    ws.onclose = (ev) => finish(ev.code, ev.reason);
    // Browsers follow an error with a close that carries the code; some runtimes
    // (Node 20's experimental WebSocket) never do when the connection fails.
    ws.onerror = () => {
      setTimeout(() => finish(1006, "connection failed"), 250);
    };
  }

  private connected(): void {
    const reconnected = this.everOpen;
    this.everOpen = true;
    this.attempt = 0;
    this.setState("open");
    this.emit("open", { reconnected });
    void this.catchUp(Object.keys(this.order.snapshot()));
  }

  private closed(code: number, reason: string): void {
    for (const [reqId, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new FerryError(ClientCode.ConnectionClosed, "connection closed before the response", p.event, reqId));
    }
    this.pending.clear();
    const info = describeClose(code, reason);
    const policy = this.opts.reconnect;
    if (this.stopped || !info.reconnect || policy === false) {
      this.emit("close", { ...info, willReconnect: false });
      this.setState("closed");
      return;
    }
    // Full jitter over an exponential window, so many clients do not return at once.
    const min = policy?.minDelayMs ?? 500;
    const max = policy?.maxDelayMs ?? 15_000;
    const window = Math.min(max, min * 2 ** Math.min(this.attempt, 16));
    const delay = Math.round(min / 2 + Math.random() * (window - min / 2));
    this.attempt++;
    this.emit("close", { ...info, willReconnect: true, retryInMs: delay });
    this.setState("reconnecting");
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  private frame(bytes: Uint8Array): void {
    let push: pb.PushBody;
    try {
      push = fromBinary(pb.PushBodySchema, bytes);
      switch (push.event) {
        case PushEvent.PushResponseBody:
          return this.response(fromBinary(pb.ResponseBodySchema, push.data));
        case PushEvent.PushMsgDataList:
          return this.messages(fromBinary(pb.MsgDataListSchema, push.data).msgDataList);
        case PushEvent.PushNoticeDataList:
          for (const n of fromBinary(pb.NoticeDataListSchema, push.data).noticeDataList) {
            this.emit("notice", {
              convId: n.convId,
              noticeId: n.noticeId,
              title: n.title,
              contentType: n.contentType,
              content: n.content,
              unreadCount: n.unreadCount,
              unreadAbsolute: n.unreadAbsolute,
              createTime: Number(n.createTime) || 0,
              raw: n,
            });
          }
          return;
      }
    } catch (e) {
      this.emit("error", new Error(`undecodable frame from the server: ${e}`));
    }
  }

  private response(r: pb.ResponseBody): void {
    const p = this.pending.get(r.reqId);
    if (!p) return;
    this.pending.delete(r.reqId);
    clearTimeout(p.timer);
    if (r.code === ResponseBody_Code.Success) {
      p.resolve(r.data);
      return;
    }
    // Every response payload has CommonResp at field 1.
    let msg = "";
    try {
      msg = fromBinary(pb.CustomResponseErrorSchema, r.data).commonResp?.msg ?? "";
    } catch {
      // The code alone still says what happened.
    }
    p.reject(new FerryError(r.code, msg || ResponseBody_Code[r.code] || "error", r.event, r.reqId));
  }

  private messages(list: pb.MsgData[]): void {
    const convs = new Set<string>();
    for (const m of list) {
      this.order.offer(toChatMessage(m));
      convs.add(m.convId);
    }
    for (const c of convs) if (this.order.missing(c, 1).length) this.fill(c);
  }

  // --- catch-up ---------------------------------------------------------------

  /** Asks where each conversation is, then fetches what is missing. */
  private async catchUp(convs: string[]): Promise<void> {
    try {
      for (let i = 0; i < convs.length; i += SYNC_CHUNK) {
        const seqs = await this.syncConvSeq(convs.slice(i, i + SYNC_CHUNK));
        for (const [conv, s] of Object.entries(seqs)) this.order.raise(conv, s.minSeq, s.maxSeq);
      }
    } catch (e) {
      // The next reconnect starts over; a closed socket is not an error of its own.
      if (!(e instanceof FerryError && e.retryable)) this.emit("error", e as Error);
      return;
    }
    for (const c of convs) if (this.order.missing(c, 1).length) this.fill(c);
  }

  /** One fill per conversation at a time; a request for another while one runs is remembered. */
  private fill(conv: string): void {
    if (this.filling.has(conv)) {
      this.refill.add(conv);
      return;
    }
    this.filling.add(conv);
    this.fillOnce(conv)
      .catch((e) => {
        if (!(e instanceof FerryError && e.retryable)) this.emit("error", e as Error);
      })
      .finally(() => {
        this.filling.delete(conv);
        if (this.refill.delete(conv) && this._state === "open" && this.order.missing(conv, 1).length) {
          this.fill(conv);
        }
      });
  }

  private async fillOnce(conv: string): Promise<void> {
    let stuck = 0;
    for (;;) {
      const want = this.order.missing(conv, SYNC_CHUNK);
      if (!want.length || this._state !== "open") return;
      for (const m of await this.syncRaw([{ convId: conv, seqs: want }])) {
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
        if (seqs.length) this.emit("gap", { convId: conv, seqs });
        stuck = 0;
        continue;
      }
      await sleep(50 * 2 ** stuck);
    }
  }
}
