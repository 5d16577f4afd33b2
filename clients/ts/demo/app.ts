// The chat demo served at /demo: a page built only on the client library, plus two
// development endpoints of ferry (/demo/token, /demo/notice).

import { connect } from "../src/index.js";
import type { ChatMessage, FerryClient, Notice } from "../src/index.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

let client: FerryClient | undefined;
let me = "";
let current: string | undefined; // the peer of the open chat
const messages = new Map<string, ChatMessage[]>(); // by convId
const unread = new Map<string, number>(); // by peer
const notices = new Map<string, { notice: Notice; pushes: number; acked: boolean }>();
const scheduled: { text: string; due: number; clientMsgId: string }[] = [];

function convWith(peer: string): string {
  return `single:${[me, peer].sort().join("-")}`;
}

function peerOf(convId: string): string | undefined {
  const m = /^single:([^-]+)-([^-]+)$/.exec(convId);
  if (!m) return undefined;
  return m[1] === me ? m[2] : m[1];
}

function log(line: string): void {
  const el = $("log");
  el.textContent = `${new Date().toLocaleTimeString()} ${line}\n${el.textContent}`.slice(0, 4000);
}

async function post(path: string, body: unknown): Promise<any> {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(json.error ?? `${r.status}`);
  return json;
}

function el(tag: string, props: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

// --- rendering ---------------------------------------------------------------

function renderContacts(): void {
  const peers = new Set<string>();
  for (const conv of messages.keys()) {
    const p = peerOf(conv);
    if (p) peers.add(p);
  }
  if (current) peers.add(current);
  const ul = $("contacts");
  ul.replaceChildren(
    ...[...peers].sort().map((p) => {
      const n = unread.get(p) ?? 0;
      const li = el("li", { "data-peer": p, class: p === current ? "active" : "" }, el("span", {}, p));
      if (n) li.append(el("span", { class: "unread" }, String(n)));
      li.onclick = () => openChat(p);
      return li;
    }),
  );
  if (!peers.size) ul.replaceChildren(el("li", { class: "empty" }, "nobody yet"));
}

function renderMessages(): void {
  const ul = $("messages");
  if (!current) return;
  const conv = convWith(current);
  $("chat-head").replaceChildren(
    el("strong", {}, `Chatting with ${current}`),
    " ",
    el("small", {}, conv),
  );
  ul.replaceChildren(
    ...(messages.get(conv) ?? []).map((m) =>
      el(
        "li",
        { class: m.senderId === me ? "mine" : "", "data-seq": String(m.seq) },
        el("div", { class: "text" }, m.text),
        el(
          "div",
          { class: "meta" },
          el("span", { class: "seq" }, `#${m.seq}`),
          ` ${m.senderId} · ${new Date(m.serverTime || Date.now()).toLocaleTimeString()}`,
        ),
      ),
    ),
  );
  ul.scrollTop = ul.scrollHeight;
  $("scheduled").replaceChildren(
    ...scheduled.map((s) =>
      el("li", { "data-client-msg-id": s.clientMsgId }, `scheduled: "${s.text}", due ${new Date(s.due).toLocaleTimeString()}`),
    ),
  );
}

function renderNotices(): void {
  const ul = $("notices");
  ul.replaceChildren(
    ...[...notices.values()].reverse().map(({ notice, pushes, acked }) => {
      const ack = el("button", { class: "ack secondary", type: "button" }, acked ? "acked ✓" : "Ack");
      (ack as HTMLButtonElement).disabled = acked;
      ack.onclick = async () => {
        try {
          await client!.ackNotice(notice.convId, notice.noticeId);
          notices.get(notice.noticeId)!.acked = true;
          log(`acked notice ${notice.noticeId.slice(0, 8)}`);
        } catch (e) {
          log(`ack failed: ${(e as Error).message}`);
        }
        renderNotices();
      };
      return el(
        "li",
        { class: acked ? "acked" : "", "data-notice-id": notice.noticeId, "data-pushes": String(pushes) },
        el("div", {}, el("strong", {}, notice.title)),
        el("div", { class: "meta" }, `${notice.convId} · pushed ${pushes}×`),
        ack,
      );
    }),
  );
}

// --- actions -----------------------------------------------------------------

function openChat(peer: string): void {
  current = peer;
  unread.delete(peer);
  for (const id of ["text", "send", "send-later"]) ($(id) as HTMLInputElement).disabled = false;
  const conv = convWith(peer);
  if (!messages.has(conv)) {
    messages.set(conv, []);
    // Show the last 50 messages, then follow the conversation.
    client!
      .syncConvSeq([conv])
      .then((s) => client!.track(conv, Math.max(0, (s[conv]?.maxSeq ?? 0) - 50)))
      .catch((e) => log(`history: ${(e as Error).message}`));
  }
  renderContacts();
  renderMessages();
  $("text").focus();
}

async function send(deliverAfter?: number): Promise<void> {
  const input = $("text") as HTMLInputElement;
  const text = input.value.trim();
  if (!text || !current) return;
  try {
    const { clientMsgId } = await client!.send({ convId: convWith(current), content: text, deliverAfter });
    input.value = "";
    if (deliverAfter) {
      scheduled.push({ text, due: Date.now() + deliverAfter * 1000, clientMsgId });
      renderMessages();
    }
  } catch (e) {
    log(`send failed: ${(e as Error).message}`);
  }
}

function onMessage(m: ChatMessage): void {
  const list = messages.get(m.convId) ?? [];
  list.push(m);
  messages.set(m.convId, list);
  const i = scheduled.findIndex((s) => s.clientMsgId === m.clientMsgId);
  if (i >= 0) scheduled.splice(i, 1);
  const peer = peerOf(m.convId);
  if (peer && peer !== current) unread.set(peer, (unread.get(peer) ?? 0) + 1);
  renderContacts();
  renderMessages();
}

function onNotice(n: Notice): void {
  const seen = notices.get(n.noticeId);
  if (seen) seen.pushes++;
  else notices.set(n.noticeId, { notice: n, pushes: 1, acked: false });
  renderNotices();
}

async function join(name: string): Promise<void> {
  const { token } = await post("/demo/token", { userId: name });
  me = name;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  // A device id per tab, kept across reloads, so a reload replaces its own socket.
  const deviceId = sessionStorage.getItem("ferry-device") ?? `web-${Math.random().toString(36).slice(2, 10)}`;
  sessionStorage.setItem("ferry-device", deviceId);
  // The first token was minted above (a bad name fails before the page changes);
  // every reconnect mints a fresh one.
  let first: string | undefined = token;
  const nextToken = async (): Promise<string> => {
    const t = first ?? (await post("/demo/token", { userId: name })).token;
    first = undefined;
    return t;
  };
  client = connect({ url, token: nextToken, userId: name, deviceId });
  client.on("state", ({ state }) => {
    const s = $("state");
    s.textContent = state;
    s.className = state;
  });
  client.on("close", (c) => log(`closed ${c.code}: ${c.meaning}${c.willReconnect ? `; retry in ${c.retryInMs} ms` : ""}`));
  client.on("open", ({ reconnected }) => log(reconnected ? "reconnected, caught up" : "connected"));
  client.on("message", onMessage);
  client.on("notice", onNotice);
  client.on("gap", (g) => log(`gave up on ${g.convId} seqs ${g.seqs.join(",")}`));
  client.on("error", (e) => log(`error: ${e.message}`));
  $("login").style.display = "none";
  $("app").style.display = "grid";
  $("me").textContent = `signed in as ${name}`;
  document.title = `${name} · ferry chat demo`;
  renderContacts();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ($("name") as HTMLInputElement).value.trim();
  join(name).catch((e) => ($("login-error").textContent = (e as Error).message));
});
$("new-chat").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("peer") as HTMLInputElement;
  const peer = input.value.trim();
  if (!peer || peer === me) return;
  input.value = "";
  openChat(peer);
});
$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void send();
});
$("send-later").addEventListener("click", () => {
  void send(Number(($("delay") as HTMLInputElement).value) || 5);
});
$("notice-me").addEventListener("click", async () => {
  try {
    const n = await post("/demo/notice", { userId: me, title: `Test notice for ${me}` });
    log(`notice ${String(n.noticeId).slice(0, 8)} created`);
  } catch (e) {
    log(`notice failed: ${(e as Error).message}`);
  }
});
