// Errors and close codes, with what each means for an app.

import { ActiveEvent, ResponseBody_Code } from "./gen/gateway_pb.js";

/** Failures that happen on this side of the socket (negative, never sent by the server). */
export const ClientCode = {
  /** The client is not connected; nothing was sent. */
  NotConnected: -1,
  /** No response within the request timeout; the request may or may not have been handled. */
  Timeout: -2,
  /** The socket closed before the response; the request may or may not have been handled. */
  ConnectionClosed: -3,
} as const;

/** A request that did not succeed: the server's ResponseBody code and CommonResp.msg. */
export class FerryError extends Error {
  /** A ResponseBody.Code (RequestError = 3, RetryError = 8, …) or a negative ClientCode. */
  readonly code: number;
  /** The name of `code` ("RequestError", "Timeout", …). */
  readonly codeName: string;
  readonly event: ActiveEvent;
  readonly reqId: string;

  constructor(code: number, message: string, event: ActiveEvent, reqId: string) {
    super(message);
    this.name = "FerryError";
    this.code = code;
    this.codeName = codeName(code);
    this.event = event;
    this.reqId = reqId;
  }

  /** RetryError, timeouts and lost connections are worth retrying; RequestError is not. */
  get retryable(): boolean {
    return (
      this.code === ResponseBody_Code.RetryError ||
      this.code === ClientCode.Timeout ||
      this.code === ClientCode.ConnectionClosed ||
      this.code === ClientCode.NotConnected
    );
  }
}

export function codeName(code: number): string {
  for (const [name, value] of Object.entries(ClientCode)) {
    if (value === code) return name;
  }
  return ResponseBody_Code[code] ?? `Code${code}`;
}

/**
 * Throw this (or `Unauthorized`) from the `token()` callback to stop reconnecting:
 * the client closes for good with `willReconnect: false`. Any other error thrown by
 * `token()` is retried with backoff like a lost connection.
 */
export class StopReconnecting extends Error {
  /** Set on both classes, so a copy of the library bundled twice still recognises it. */
  readonly stopReconnecting = true;

  constructor(message = "stopped reconnecting") {
    super(message);
    this.name = "StopReconnecting";
  }
}

/** `token()` cannot get a token for this user (signed out, revoked): stop and log in again. */
export class Unauthorized extends StopReconnecting {
  constructor(message = "unauthorized") {
    super(message);
    this.name = "Unauthorized";
  }
}

export function isStopReconnecting(e: unknown): e is StopReconnecting {
  return e instanceof StopReconnecting || (typeof e === "object" && e !== null && (e as StopReconnecting).stopReconnecting === true);
}

/** Who ended the socket: the server (a close frame), the network, or this client. */
export type CloseOrigin = "server" | "network" | "client";

/** Why the socket closed, and whether to reconnect. */
export interface CloseInfo {
  code: number;
  reason: string;
  origin: CloseOrigin;
  /** A sentence for people: what happened and what to do. */
  meaning: string;
  /** False when reconnecting would not help or would fight another device. */
  reconnect: boolean;
}

/** A close frame from the server (or a 1006 from the network), for people and for the reconnect policy. */
export function describeClose(code: number, reason: string): CloseInfo {
  const origin: CloseOrigin = code === 1006 ? "network" : "server";
  const c = (meaning: string, reconnect: boolean): CloseInfo => ({ code, reason, origin, meaning, reconnect });
  switch (code) {
    case 3000:
      return c(`authentication failed, log in again (${reason || "no reason given"})`, false);
    case 1000:
      if (reason === "duplicate connection") {
        return c("replaced: the same device connected again elsewhere", false);
      }
      if (reason === "idle timeout") return c("closed after a silent period", true);
      return c("closed by the server", true);
    case 1001:
      return c("kicked: signed in on another device, or removed by the server", false);
    case 1006:
      return c(reason ? `connection lost (${reason})` : "connection lost", true);
    case 1009:
      return c("a frame was larger than the server accepts", true);
    case 1012:
      return c("the server is restarting", true);
    case 1013:
      return c(`the server is busy, try again later (${reason || "overloaded"})`, true);
    default:
      return c(reason || `closed with code ${code}`, true);
  }
}

/** An end this client decided on: `close()`, `token()` saying stop, or a stalled link. */
export function clientClose(code: number, reason: string, meaning: string, reconnect: boolean): CloseInfo {
  return { code, reason, origin: "client", meaning, reconnect };
}
