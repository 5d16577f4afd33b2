// The chat demo served at /demo: a page built only on the client library, plus two
// development endpoints of ferry (/demo/token, /demo/notice).

import { Unauthorized, connect } from "../src/index.js";
import type { ChatMessage, DiscoveredConv, FerryClient, FerryError, Notice } from "../src/index.js";
import { ID_PATTERN, forget, load, newClientMsgId, newDeviceId, save } from "./saved.js";
import type { Queued, Saved } from "./saved.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Messages shown when a chat is opened: the conversation's last ones. */
const HISTORY = 50;

let client: FerryClient | undefined;
let saved: Saved;
let current: string | undefined; // the convId of the open chat
const messages = new Map<string, Map<number, ChatMessage>>(); // by convId, then seq
const notices = new Map<string, { notice: Notice; pushes: number; acked: boolean }>();
const scheduled: { text: string; due: number; clientMsgId: string }[] = [];
let flushing = false;

const me = () => saved.user;

function convWith(peer: string): string {
  return `single:${[me(), peer].sort().join("-")}`;
}

function peerOf(convId: string): string | undefined {
  const m = /^single:([^-]+)-([^-]+)$/.exec(convId);
  if (!m) return undefined;
  return m[1] === me() ? m[2] : m[1];
}

function label(convId: string): string {
  return peerOf(convId) ?? (convId.startsWith("group:") ? `# ${convId.slice(6)}` : convId);
}

function log(line: string): void {
  const el = $("log");
  el.textContent = `${new Date().toLocaleTimeString()} ${line}\n${el.textContent}`.slice(0, 4000);
}

/** An error shown where it happened (and in the log); "" clears it. */
function showError(where: "chat" | "peer" | "notice" | "login", text: string): void {
  const el = $(`${where}-error`);
  el.textContent = text;
  el.hidden = !text;
  if (text) log(text);
}

async function post(path: string, body: unknown): Promise<any> {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(json.error ?? `${r.status}`), { status: r.status });
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

function persist(): void {
  if (client) {
    saved.lastSeqs = client.lastSeqs();
    saved.cursor = client.discoveryCursor || saved.cursor;
  }
  save(saved);
}

function list(convId: string): void {
  if (!saved.convs.includes(convId)) saved.convs.push(convId);
}

// --- rendering ---------------------------------------------------------------

function renderContacts(): void {
  const convs = [...saved.convs];
  if (current && !convs.includes(current)) convs.push(current);
  const ul = $("contacts");
  ul.replaceChildren(
    ...convs
      .sort((a, b) => label(a).localeCompare(label(b)))
      .map((c) => {
        const n = saved.unread[c] ?? 0;
        const props: Record<string, string> = { "data-conv": c, class: c === current ? "active" : "" };
        const peer = peerOf(c);
        if (peer) props["data-peer"] = peer;
        const li = el("li", props, el("span", {}, label(c)));
        if (n) li.append(el("span", { class: "unread" }, String(n)));
        li.onclick = () => void openChat(c);
        return li;
      }),
  );
  if (!convs.length) ul.replaceChildren(el("li", { class: "empty" }, "nobody yet"));
}

function renderMessages(): void {
  if (!current) return;
  const conv = current;
  $("chat-head").replaceChildren(
    el("strong", {}, conv.startsWith("group:") ? `Group ${conv.slice(6)}` : `Chatting with ${label(conv)}`),
    " ",
    el("small", {}, conv),
  );
  const shown = [...(messages.get(conv)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  const queued = saved.outbox.filter((q) => q.convId === conv);
  const ul = $("messages");
  ul.replaceChildren(
    ...shown.map((m) =>
      el(
        "li",
        { class: m.senderId === me() ? "mine" : "", "data-seq": String(m.seq), "data-client-msg-id": m.clientMsgId },
        el("div", { class: "text" }, m.text),
        el(
          "div",
          { class: "meta" },
          el("span", { class: "seq" }, `#${m.seq}`),
          ` ${m.senderId || "system"} · ${new Date(m.serverTime || Date.now()).toLocaleTimeString()}`,
        ),
      ),
    ),
    ...queued.map((q) =>
      el(
        "li",
        { class: "mine queued", "data-client-msg-id": q.clientMsgId },
        el("div", { class: "text" }, q.text),
        el("div", { class: "meta" }, "queued: sent when connected"),
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

function renderComposer(): void {
  const open = client?.state === "open";
  const chat = current !== undefined;
  ($("text") as HTMLInputElement).disabled = !chat;
  const send = $("send") as HTMLButtonElement;
  send.disabled = !chat;
  send.textContent = open ? "Send" : "Queue";
  send.title = open ? "" : "not connected: the message is sent once the connection is back";
  ($("send-later") as HTMLButtonElement).disabled = !chat || !open;
}

function renderBanner(text: string, kind: "ok" | "warn" | "bad"): void {
  const b = $("banner");
  b.textContent = text;
  b.className = kind;
  b.hidden = kind === "ok";
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
          showError("notice", "");
          log(`acked notice ${notice.noticeId.slice(0, 8)}`);
        } catch (e) {
          showError("notice", `ack failed: ${(e as Error).message}`);
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

/** Opens a chat and shows its last messages, complete whichever way it was opened. */
async function openChat(conv: string): Promise<void> {
  current = conv;
  delete saved.unread[conv];
  list(conv);
  persist();
  showError("chat", "");
  renderContacts();
  renderMessages();
  renderComposer();
  $("text").focus();
  try {
    await loadHistory(conv);
  } catch (e) {
    showError("chat", `history could not be loaded: ${(e as Error).message}`);
  }
}

async function loadHistory(conv: string): Promise<void> {
  const c = client!;
  const seq = (await c.syncConvSeq([conv]))[conv];
  if (!seq) return;
  const have = messages.get(conv) ?? new Map<number, ChatMessage>();
  messages.set(conv, have);
  const from = Math.max(seq.minSeq || 1, seq.maxSeq - HISTORY + 1);
  const want: number[] = [];
  for (let s = from; s <= seq.maxSeq; s++) if (!have.has(s)) want.push(s);
  if (want.length) {
    for (const m of await c.syncMsgList([{ convId: conv, seqs: want }])) {
      if (m.senderId !== "" || m.serverTime) have.set(m.seq, m);
    }
  }
  // Then follow it: what comes after arrives as it is sent.
  c.track(conv, seq.maxSeq);
  if (current === conv) renderMessages();
}

function queue(q: Queued): void {
  saved.outbox.push(q);
  persist();
  renderMessages();
}

async function send(deliverAfter?: number): Promise<void> {
  const input = $("text") as HTMLInputElement;
  const text = input.value.trim();
  const conv = current;
  if (!text || !conv) return;
  showError("chat", "");
  const q: Queued = { convId: conv, text, clientMsgId: newClientMsgId() };
  input.value = "";
  if (client?.state !== "open") {
    queue(q);
    return;
  }
  try {
    await client.send({ convId: conv, content: text, clientMsgId: q.clientMsgId, deliverAfter });
    if (deliverAfter) {
      scheduled.push({ text, due: Date.now() + deliverAfter * 1000, clientMsgId: q.clientMsgId });
      renderMessages();
    }
  } catch (e) {
    const err = e as FerryError;
    if (err.retryable && !deliverAfter) {
      // Sent again, with the same clientMsgId, once the connection is back.
      queue(q);
    } else {
      input.value = text;
      showError("chat", `send failed: ${err.message}`);
    }
  }
}

/** Sends what was queued while offline, in order, each with its own clientMsgId. */
async function flushOutbox(): Promise<void> {
  if (flushing) return;
  flushing = true;
  try {
    while (saved.outbox.length && client?.state === "open") {
      const q = saved.outbox[0];
      try {
        await client.send({ convId: q.convId, content: q.text, clientMsgId: q.clientMsgId });
      } catch (e) {
        if ((e as FerryError).retryable) return; // the next reconnect tries again
        showError("chat", `send failed: ${(e as Error).message} ("${q.text}" was not sent)`);
      }
      saved.outbox.shift();
      persist();
      renderMessages();
    }
  } finally {
    flushing = false;
  }
}

function onMessage(m: ChatMessage): void {
  const have = messages.get(m.convId) ?? new Map<number, ChatMessage>();
  have.set(m.seq, m);
  messages.set(m.convId, have);
  list(m.convId);
  const i = scheduled.findIndex((s) => s.clientMsgId === m.clientMsgId);
  if (i >= 0) scheduled.splice(i, 1);
  if (m.convId !== current && m.senderId !== me()) saved.unread[m.convId] = (saved.unread[m.convId] ?? 0) + 1;
  persist();
  renderContacts();
  if (m.convId === current) renderMessages();
}

function onConversation(c: DiscoveredConv): void {
  if (c.removed) {
    saved.convs = saved.convs.filter((x) => x !== c.convId);
    delete saved.unread[c.convId];
    if (current === c.convId) showError("chat", `you are no longer a member of ${c.convId}`);
  } else {
    if (c.isNew) log(`found ${c.convId} (${c.maxSeq} messages)`);
    list(c.convId);
  }
  persist();
  renderContacts();
}

function onNotice(n: Notice): void {
  const seen = notices.get(n.noticeId);
  if (seen) seen.pushes++;
  else notices.set(n.noticeId, { notice: n, pushes: 1, acked: false });
  renderNotices();
}

async function join(s: Saved, firstToken?: string): Promise<void> {
  saved = s;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  let first = firstToken;
  // A token for every (re)connect; a name the server refuses stops the reconnecting.
  const nextToken = async (): Promise<string> => {
    if (first) {
      const t = first;
      first = undefined;
      return t;
    }
    try {
      return (await post("/demo/token", { userId: s.user })).token;
    } catch (e) {
      const status = (e as { status?: number }).status ?? 0;
      if (status >= 400 && status < 500) throw new Unauthorized((e as Error).message);
      throw e;
    }
  };
  client = connect({
    url,
    token: nextToken,
    userId: s.user,
    deviceId: s.deviceId,
    lastSeqs: s.lastSeqs,
    discovery: { cursor: s.cursor || undefined },
  });
  client.on("state", ({ state }) => {
    const st = $("state");
    st.textContent = state;
    st.className = state;
    if (state === "connecting") renderBanner("Connecting…", "warn");
    if (state === "open") renderBanner("", "ok");
    renderComposer();
  });
  client.on("close", (c) => {
    log(`closed ${c.code}: ${c.meaning}${c.willReconnect ? `; retry in ${c.retryInMs} ms` : ""}`);
    if (c.willReconnect) {
      const secs = Math.max(1, Math.round((c.retryInMs ?? 0) / 1000));
      renderBanner(`Not connected: ${c.meaning}. Reconnecting in ${secs} s; messages you send are queued.`, "warn");
    } else {
      renderBanner(`Disconnected: ${c.meaning}. Reload the page to reconnect.`, "bad");
    }
  });
  client.on("open", ({ reconnected }) => {
    log(reconnected ? "reconnected, caught up" : "connected");
    void flushOutbox();
    // The discovery that runs on every (re)connect: keep its cursor once it is done.
    void client!.discover().then(persist, () => undefined);
    if (current) void loadHistory(current).catch((e) => showError("chat", `history could not be loaded: ${e.message}`));
  });
  client.on("message", onMessage);
  client.on("conversation", onConversation);
  client.on("notice", onNotice);
  client.on("gap", (g) => log(`gave up on ${g.convId} seqs ${g.seqs.join(",")}`));
  client.on("error", (e) => log(`error: ${e.message}`));
  $("login").style.display = "none";
  $("app").style.display = "grid";
  $("me").textContent = `signed in as ${s.user}`;
  $("sign-out").hidden = false;
  document.title = `${s.user} · ferry chat demo`;
  persist();
  renderContacts();
  renderComposer();
}

// --- wiring ------------------------------------------------------------------

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ($("name") as HTMLInputElement).value.trim();
  if (!ID_PATTERN.test(name)) {
    showError("login", `"${name}" is not a valid user id: 1-128 letters, digits, _ . @ : =`);
    return;
  }
  post("/demo/token", { userId: name })
    .then(({ token }) =>
      join({ user: name, deviceId: newDeviceId(), lastSeqs: {}, unread: {}, convs: [], cursor: "", outbox: [] }, token),
    )
    .catch((e) => showError("login", `cannot sign in: ${(e as Error).message}`));
});
$("new-chat").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("peer") as HTMLInputElement;
  const value = input.value.trim();
  const group = value.startsWith("group:");
  const id = group ? value.slice(6) : value;
  if (!ID_PATTERN.test(id)) {
    showError("peer", `"${value}" is not a valid ${group ? "group" : "user"} id: 1-128 letters, digits, _ . @ : =`);
    return;
  }
  if (!group && id === me()) {
    showError("peer", "that is you: pick someone else");
    return;
  }
  showError("peer", "");
  input.value = "";
  void openChat(group ? value : convWith(id));
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
    const n = await post("/demo/notice", { userId: me(), title: `Test notice for ${me()}` });
    showError("notice", "");
    log(`notice ${String(n.noticeId).slice(0, 8)} created`);
  } catch (e) {
    showError("notice", `notice failed: ${(e as Error).message}`);
  }
});
$("sign-out").addEventListener("click", () => {
  client?.close();
  forget();
  location.reload();
});

// A reload in the same tab keeps the user signed in.
const before = load();
if (before) void join(before);
