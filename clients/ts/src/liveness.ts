// Noticing a dead link. A socket can stay "open" while nothing passes (a stalled
// NAT, a proxy that stopped forwarding, a suspended laptop): no close event ever
// comes. ferry pings a socket that has been silent for half of its
// `session.idle_timeout_secs`, but browsers answer pings without telling the page,
// so the client watches for itself: after `silentMs` without a frame it sends a
// probe that the server must answer; when nothing at all arrives within `graceMs`
// after that, the link is declared dead and replaced.

export interface LivenessOptions {
  /**
   * Silence before a probe is sent. Default 30 000 ms: ferry's ping interval with its
   * default `session.idle_timeout_secs` (60); use half of the server's idle timeout.
   */
  silentMs?: number;
  /** How long a probe may go unanswered (no frame at all) before the link is replaced. Default 5 000 ms. */
  graceMs?: number;
}

export const DEFAULT_SILENT_MS = 30_000;
export const DEFAULT_GRACE_MS = 5_000;

/** One per socket: started when it opens, fed every frame, stopped when it ends. */
export class Watchdog {
  private readonly silentMs: number;
  private readonly graceMs: number;
  private last = Date.now();
  private probedAt: number | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    options: LivenessOptions,
    /** Sends a request the server answers at once; its answer is just a frame. */
    private readonly probe: () => void,
    /** The link is dead: `silentFor` ms without a frame. */
    private readonly dead: (silentFor: number) => void,
  ) {
    this.silentMs = Math.max(1, options.silentMs ?? DEFAULT_SILENT_MS);
    this.graceMs = Math.max(1, options.graceMs ?? DEFAULT_GRACE_MS);
  }

  start(): void {
    this.last = Date.now();
    this.probedAt = undefined;
    clearInterval(this.timer);
    // Fine enough that the detection is late by at most a quarter of the grace.
    const tick = Math.max(50, Math.min(1000, Math.floor(this.graceMs / 4)));
    this.timer = setInterval(() => this.tick(), tick);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Any frame from the server: the link is alive. */
  frame(): void {
    this.last = Date.now();
    this.probedAt = undefined;
  }

  /** Something looked wrong (a request timed out): probe now rather than after the silence. */
  check(): void {
    if (this.timer === undefined || this.probedAt !== undefined) return;
    this.probedAt = Date.now();
    this.probe();
  }

  private tick(): void {
    const now = Date.now();
    if (this.probedAt !== undefined) {
      if (now - this.probedAt >= this.graceMs) {
        this.stop();
        this.dead(now - this.last);
      }
      return;
    }
    if (now - this.last >= this.silentMs) {
      this.probedAt = now;
      this.probe();
    }
  }
}
