// The little of the WebSocket API the client uses, so browsers' WebSocket, Node's
// built-in one and the `ws` package all fit.

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `WebSocket.OPEN` in every implementation. */
export const OPEN = 1;

/** The bytes of a binary frame, whatever the implementation hands over. */
export function frameBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

export function defaultWebSocket(): WebSocketConstructor {
  const ctor = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof ctor !== "function") {
    throw new Error(
      "no global WebSocket: pass one as the WebSocket option (e.g. from the ws package), " +
        "or run Node 22+ (Node 20: --experimental-websocket)",
    );
  }
  return ctor as WebSocketConstructor;
}
