// The connection: one socket at a time, requests as promises, pushes as events,
// reconnect with jittered backoff, and catch-up after every reconnect.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";

import * as pb from "./gen/gateway_pb.js";
import { ActiveEvent, PushEvent, ResponseBody_Code } from "./gen/gateway_pb.js";
import { Emitter } from "./emitter.js";
import { ClientCode, FerryError, clientClose, describeClose, isStopReconnecting } from "./errors.js";
import type { CloseInfo } from "./errors.js";
import type { ConnectOptions, ConnectionState, ConvSeq, FerryEvents, SendInput, SyncItem } from "./types.js";
import type { DiscoveredConv } from "./discovery.js";
import { DEFAULT_SETTLE_MS, Discovery } from "./discovery.js";
import { Watchdog } from "./liveness.js";
import { CatchUp } from "./catchup.js";
import { Ordering, toChatMessage } from "./order.js";
import type { ChatMessage } from "./order.js";
import { OPEN, defaultWebSocket, frameBytes } from "./socket.js";
import type { WebSocketConstructor, WebSocketLike } from "./socket.js";

interface Pending {
  event: ActiveEvent;
  resolve: (data: Uint8Array) => void;
  reject: (e: FerryError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const utf8 = new TextEncoder();

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
  private readonly catchUp: CatchUp;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly watchdog: Watchdog | undefined;
  private readonly discovery: Discovery | undefined;
  private settleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ConnectOptions) {
    super();
    this.opts = options;
    this.userId = options.userId;
    this.deviceId = options.deviceId ?? randomId();
    this.WS = options.WebSocket ?? defaultWebSocket();
    this.order = new Ordering((m) => this.emit("message", m));
    this.catchUp = new CatchUp(this.order, {
      isOpen: () => this._state === "open",
      convSeqs: (convs) => this.syncConvSeq(convs),
      messages: (conv, seqs) => this.syncRaw([{ convId: conv, seqs }]),
      gap: (convId, seqs) => this.emit("gap", { convId, seqs }),
      error: (e) => this.emit("error", e),
    });
    for (const [conv, seq] of Object.entries(options.lastSeqs ?? {})) this.order.track(conv, seq);
    if (options.discovery !== false) {
      this.discovery = new Discovery(options.discovery ?? {}, {
        request: (event, data) => this.request(event, data),
        follows: (convId) => this.order.has(convId),
        found: (conv, fromCursor) => this.found(conv, fromCursor),
      });
    }
    if (options.liveness !== false) {
      this.watchdog = new Watchdog(
        options.liveness ?? {},
        () => this.probe(),
        (ms) => this.drop(1006, `no frame from the server for ${ms} ms`, "the link stalled: nothing arrived, not even an answer to a probe"),
      );
    }
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

  /** Closes for good: no reconnect. The close event says that this client closed it. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this._state === "closed") return;
    try {
      this.detach()?.close(1000, "client closed");
    } catch {
      // A socket still connecting may refuse a code; it is dropped all the same.
    }
    this.closed(clientClose(1000, "client closed", "closed by this client (close() was called)", false));
  }

  /** Where the next discovery starts (persist it with `lastSeqs()` to resume later). */
  get discoveryCursor(): string {
    return this.discovery?.position ?? "";
  }

  /** Runs a discovery now (it also runs after every (re)connect); resolves when it is done. */
  discover(): Promise<void> {
    return this.discovery?.run() ?? Promise.resolve();
  }

  /** The last seq delivered per followed conversation (persist it to resume later). */
  lastSeqs(): Record<string, number> {
    return this.order.snapshot();
  }

  /** Follows a conversation from `afterSeq` on: what is missing is fetched now and after every reconnect. */
  track(convId: string, afterSeq = 0): void {
    this.order.track(convId, afterSeq);
    if (this._state === "open") void this.catchUp.run([convId]);
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
        // A slow answer or a dead link: the watchdog finds out which.
        if (this.ws === ws) this.watchdog?.check();
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
      if (isStopReconnecting(e)) {
        this.stopped = true;
        const name = (e as Error).name;
        this.closed(clientClose(name === "Unauthorized" ? 3000 : 1000, (e as Error).message, `${name} from token(): not reconnecting`, false));
      } else {
        this.closed(describeClose(1006, "token unavailable"));
      }
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
      this.closed(describeClose(1006, "cannot open socket"));
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    // Ends this socket once, whichever of close, error or the timer comes first.
    const finish = (code: number, reason: string) => {
      clearTimeout(connectTimer);
      if (this.ws !== ws) return;
      this.detach();
      this.closed(describeClose(code, reason));
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
      this.watchdog?.frame();
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
    this.watchdog?.start();
    this.emit("open", { reconnected });
    void this.catchUp.run(Object.keys(this.order.snapshot()));
    const ws = this.ws;
    const discover = () => {
      if (this.ws !== ws || this._state !== "open") return;
      this.discover().catch((e) => {
        if (!(e instanceof FerryError && e.retryable)) this.emit("error", e as Error);
      });
    };
    discover();
    const settle = this.opts.discovery === false ? 0 : (this.opts.discovery?.settleMs ?? DEFAULT_SETTLE_MS);
    if (settle > 0) this.settleTimer = setTimeout(discover, settle);
  }

  private found(conv: DiscoveredConv, fromCursor: boolean): void {
    const id = conv.convId;
    if (conv.removed) {
      this.order.forget(id);
    } else {
      if (conv.isNew) this.order.track(id, fromCursor ? Math.max(0, conv.minSeq - 1) : conv.maxSeq);
      this.order.raise(id, conv.minSeq, conv.maxSeq);
      if (this.order.missing(id, 1).length) this.catchUp.fill(id);
    }
    this.emit("conversation", conv);
  }

  /** Forgets the current socket (its late events are ignored) and returns it. */
  private detach(): WebSocketLike | undefined {
    const ws = this.ws;
    this.ws = undefined;
    this.watchdog?.stop();
    clearTimeout(this.settleTimer);
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  /** Gives up on the current socket without waiting for it to close (it may never). */
  private drop(code: number, reason: string, meaning: string): void {
    const ws = this.detach();
    if (!ws) return;
    try {
      ws.close();
    } catch {
      // Already closing.
    }
    this.closed(clientClose(code, reason, meaning, true));
  }

  /** A request the server answers at once (an empty SyncConvSeq); only the frame matters. */
  private probe(): void {
    const body = create(pb.RequestBodySchema, {
      event: ActiveEvent.SyncConvSeq,
      reqId: `${this.reqPrefix}-probe-${++this.reqCounter}`,
      data: toBinary(pb.BatchGetConvSeqReqSchema, create(pb.BatchGetConvSeqReqSchema, {})),
    });
    try {
      this.ws?.send(toBinary(pb.RequestBodySchema, body));
    } catch {
      // A socket that cannot send is dead: the grace runs out.
    }
  }

  private closed(info: CloseInfo): void {
    for (const [reqId, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new FerryError(ClientCode.ConnectionClosed, "connection closed before the response", p.event, reqId));
    }
    this.pending.clear();
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
    for (const c of convs) if (this.order.missing(c, 1).length) this.catchUp.fill(c);
  }
}
