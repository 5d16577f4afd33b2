// A local TCP proxy in front of ferry that can stall its connections: it stops
// forwarding in both directions while keeping the sockets open, as a dead NAT
// mapping or a hung middlebox does (no FIN, no RST: nothing tells the client).

import { connect, createServer } from "node:net";

export class StallingProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.links = [];
    this.refusing = false;
    this.server = createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = connect(this.targetPort, "127.0.0.1");
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end);
      upstream.on("error", end);
      client.on("close", end);
      upstream.on("close", end);
      this.links.push({ client, upstream, stalled: false });
    });
  }

  async listen() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    return this;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Connections open now (and not stalled). */
  get live() {
    return this.links.filter((l) => !l.stalled && !l.client.destroyed).length;
  }

  /** Every connection open now stops passing bytes; new ones work. */
  stall() {
    for (const l of this.links) {
      if (l.stalled || l.client.destroyed) continue;
      l.stalled = true;
      l.client.unpipe(l.upstream);
      l.upstream.unpipe(l.client);
      l.client.pause();
      l.upstream.pause();
      // Nothing that arrives from here on is read, so nothing is forwarded or answered.
      l.client.removeAllListeners("data");
      l.upstream.removeAllListeners("data");
    }
  }

  /** Cuts every open connection at once, and refuses new ones while `refusing`. */
  cut() {
    for (const l of this.links) {
      l.client.destroy();
      l.upstream.destroy();
    }
  }

  async close() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
