// The client's options, events and the shapes of its answers.

import type * as pb from "./gen/gateway_pb.js";
import type { CloseInfo } from "./errors.js";
import type { DiscoveredConv, DiscoveryOptions } from "./discovery.js";
import type { LivenessOptions } from "./liveness.js";
import type { ChatMessage } from "./order.js";
import type { WebSocketConstructor } from "./socket.js";

export interface ConnectOptions {
  /** The gateway's WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`. */
  url: string;
  /**
   * The JWT, or a function returning one (called before every connection attempt).
   * A function that throws `Unauthorized` or `StopReconnecting` ends the client for
   * good; any other error is retried with backoff.
   */
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
  /**
   * The dead-link watchdog, or false for none. Default: probe after 30 000 ms of
   * silence (ferry's ping interval at its default idle timeout), replace the socket
   * when nothing answers within 5 000 ms more.
   */
  liveness?: false | LivenessOptions;
  /**
   * Conversation discovery after every (re)connect (ferry's DiscoverConvs), or false
   * for none. A conversation found that the client does not follow yet is followed:
   * from its start when the run began from a cursor (it changed while the client was
   * away), from its next message on the very first run (no cursor: everything the
   * user ever had is listed; `track` it to get history).
   */
  discovery?: false | DiscoveryOptions;
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
  /** `origin` says who ended it: the server, the network, or this client (`close()`, a stalled link, `token()` saying stop). */
  close: CloseInfo & { willReconnect: boolean; retryInMs?: number };
  /** Every message exactly once, in seq order per conversation. */
  message: ChatMessage;
  /** Pending notices are pushed again until acked. */
  notice: Notice;
  /** A conversation that changed since the last discovery (new ones have `isNew`; left groups `removed`). */
  conversation: DiscoveredConv;
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
