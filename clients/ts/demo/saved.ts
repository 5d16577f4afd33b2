// What the demo keeps in sessionStorage, so that a reload (same tab) keeps the
// signed-in user, the conversations, where each was read up to, the discovery
// cursor and the messages waiting to be sent.

export interface Queued {
  convId: string;
  text: string;
  clientMsgId: string;
}

export interface Saved {
  user: string;
  deviceId: string;
  /** Last seq delivered per followed conversation. */
  lastSeqs: Record<string, number>;
  /** Unread count per conversation listed. */
  unread: Record<string, number>;
  /** Conversations listed (left groups are dropped). */
  convs: string[];
  cursor: string;
  outbox: Queued[];
}

const KEY = "ferry-demo";

export function load(): Saved | undefined {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as Partial<Saved>;
    if (typeof s.user !== "string" || !s.user) return undefined;
    return {
      user: s.user,
      deviceId: s.deviceId ?? newDeviceId(),
      lastSeqs: s.lastSeqs ?? {},
      unread: s.unread ?? {},
      convs: s.convs ?? [],
      cursor: s.cursor ?? "",
      outbox: s.outbox ?? [],
    };
  } catch {
    return undefined;
  }
}

export function save(s: Saved): void {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function forget(): void {
  sessionStorage.removeItem(KEY);
}

export function newDeviceId(): string {
  return `web-${Math.random().toString(36).slice(2, 10)}`;
}

export function newClientMsgId(): string {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID().replace(/-/g, "");
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

/** ferry's rule for user and group ids (src/domain.rs). */
export const ID_PATTERN = /^[A-Za-z0-9_.@:=]{1,128}$/;
