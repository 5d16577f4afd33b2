// The demo as a person uses it, in Debian's headless Chromium: a reload keeps the
// user signed in and the chats listed; a chat opened from its unread badge shows
// its whole history; groups are listed, read and written; conversations started
// (and groups joined) while the page was away appear when it comes back; while the
// connection is down a banner says so, errors show where they happen, and a message
// sent meanwhile is queued and sent once on reconnect with its clientMsgId; a peer
// id is checked before a chat opens. Screenshots go to target/web-artifacts/.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { WAIT, launch, openChatWith, say, screenshot, shown, signIn, waitForText, waitOpen } from "./browser.mjs";
import { Ferry } from "./support.mjs";

let ferry;
let chromium;
const pageErrors = [];

before(async () => {
  ferry = await new Ferry({ env: { FERRY_SESSION__SHUTDOWN_GRACE_SECS: "1" } }).start();
  chromium = await launch();
});

after(async () => {
  await chromium?.close();
  await ferry?.dispose();
});

async function person(name) {
  const p = await signIn(chromium.browser, ferry, name);
  pageErrors.push(p.errors);
  return p;
}

/** A click in the page itself: the list is re-rendered as messages arrive. */
const click = (page, sel) =>
  page.waitForSelector(sel, WAIT).then(() => page.$eval(sel, (e) => e.click()));
const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const visible = (page, sel) => page.$eval(sel, (e) => !e.hidden && e.offsetParent !== null);
const badge = (page, conv) =>
  page.$eval(`#contacts li[data-conv="${conv}"]`, (li) => Number(li.querySelector(".unread")?.textContent ?? 0));

test("after a reload the user is still signed in, and a chat opened from its badge shows all its history", async () => {
  const alice = await person("alice");
  const bob = await person("bob");
  await openChatWith(alice.page, "bob");
  for (const t of ["one", "two", "three"]) await say(alice.page, t);
  await waitForText(alice.page, "three");
  await bob.page.waitForFunction(
    () => document.querySelector('#contacts li[data-peer="alice"] .unread')?.textContent === "3",
    WAIT,
  );

  await bob.page.reload();
  await waitOpen(bob.page);
  assert.equal(await visible(bob.page, "#login"), false, "no sign-in form after the reload");
  assert.equal(await text(bob.page, "#me"), "signed in as bob");
  assert.equal(await badge(bob.page, "single:alice-bob"), 3, "the chat and its unread count are kept");

  await say(alice.page, "four");
  await bob.page.waitForFunction(
    () => document.querySelector('#contacts li[data-peer="alice"] .unread')?.textContent === "4",
    WAIT,
  );
  await click(bob.page, '#contacts li[data-peer="alice"] .unread');
  await waitForText(bob.page, "one");
  await waitForText(bob.page, "four");
  assert.deepEqual(await shown(bob.page), [
    [1, "one"],
    [2, "two"],
    [3, "three"],
    [4, "four"],
  ]);
  assert.equal(await bob.page.$('#contacts li[data-peer="alice"] .unread'), null);
  await screenshot(bob.page, "demo-history-after-reload");
  await bob.page.close();
  await alice.page.close();
});

test("groups are listed, readable and writable", async () => {
  const carol = await person("carol");
  const dave = await person("dave");
  await ferry.api("PUT", "/groups/team/members/carol", {});
  await ferry.api("PUT", "/groups/team/members/dave", {});
  await ferry.api("POST", "/messages", {
    senderId: "carol",
    convId: "group:team",
    messages: [{ contentType: 11, content: "hello team" }],
  });
  for (const p of [carol, dave]) {
    await p.page.waitForSelector('#contacts li[data-conv="group:team"]', WAIT);
  }
  assert.equal(await text(dave.page, '#contacts li[data-conv="group:team"] span'), "# team");
  await click(dave.page, '#contacts li[data-conv="group:team"]');
  await waitForText(dave.page, "hello team");
  assert.match(await text(dave.page, "#chat-head"), /^Group team group:team$/);
  await say(dave.page, "hi carol, dave here");
  await click(carol.page, '#contacts li[data-conv="group:team"]');
  await waitForText(carol.page, "hi carol, dave here");
  assert.deepEqual(await shown(carol.page), [
    [1, "hello team"],
    [2, "hi carol, dave here"],
  ]);
  // A group typed by id opens too.
  await openChatWith(carol.page, "group:team");
  assert.equal(await carol.page.$$eval("#contacts li", (l) => l.length), 1);
  await screenshot(dave.page, "demo-group");
  await carol.page.close();
  await dave.page.close();
});

test("a conversation and a group that started while the page was away appear when it comes back", async () => {
  const erin = await person("erin");
  const frank = await person("frank");
  const demo = frank.page.url();
  // frank leaves the page (the tab keeps its sessionStorage) ...
  await frank.page.goto("about:blank");
  // ... erin writes to frank for the first time, and frank is added to a group.
  await openChatWith(erin.page, "frank");
  await say(erin.page, "frank, are you there?");
  await waitForText(erin.page, "frank, are you there?");
  await ferry.api("PUT", "/groups/late/members/erin", {});
  await ferry.api("PUT", "/groups/late/members/frank", {});
  await ferry.api("POST", "/messages", {
    senderId: "erin",
    convId: "group:late",
    messages: [{ contentType: 11, content: "welcome to late" }],
  });

  await frank.page.goto(demo);
  await waitOpen(frank.page);
  await frank.page.waitForSelector('#contacts li[data-peer="erin"] .unread', WAIT);
  await frank.page.waitForSelector('#contacts li[data-conv="group:late"] .unread', WAIT);
  assert.equal(await badge(frank.page, "single:erin-frank"), 1);
  assert.equal(await badge(frank.page, "group:late"), 1);
  await screenshot(frank.page, "demo-found-after-offline");
  await click(frank.page, '#contacts li[data-peer="erin"]');
  await waitForText(frank.page, "frank, are you there?");
  await click(frank.page, '#contacts li[data-conv="group:late"]');
  await waitForText(frank.page, "welcome to late");
  await erin.page.close();
  await frank.page.close();
});

test("while disconnected: a banner, inline errors, and a queued message sent once on reconnect", async () => {
  const gina = await person("gina");
  const hugo = await person("hugo");
  await openChatWith(gina.page, "hugo");
  await say(gina.page, "before the outage");
  await hugo.page.waitForSelector('#contacts li[data-peer="gina"]', WAIT);
  await click(hugo.page, '#contacts li[data-peer="gina"]');
  await waitForText(hugo.page, "before the outage");
  assert.equal(await visible(hugo.page, "#banner"), false);

  await ferry.stop();
  await hugo.page.waitForFunction(() => document.querySelector("#state").textContent !== "open", WAIT);
  await hugo.page.waitForFunction(() => !document.querySelector("#banner").hidden, WAIT);
  assert.match(await text(hugo.page, "#banner"), /Reconnecting|Connecting/);
  assert.equal(await text(hugo.page, "#send"), "Queue");
  assert.equal(await hugo.page.$eval("#send-later", (b) => b.disabled), true);

  await say(hugo.page, "sent while away");
  const queued = await hugo.page.$eval("#messages li.queued", (li) => li.dataset.clientMsgId);
  assert.ok(queued);
  assert.equal(await hugo.page.$eval("#text", (e) => e.value), "", "the text is taken into the queue");
  // A failed request shows where it was made.
  await hugo.page.click("#notice-me");
  await hugo.page.waitForFunction(() => !document.querySelector("#notice-error").hidden, WAIT);
  assert.match(await text(hugo.page, "#notice-error"), /notice failed/);
  await screenshot(hugo.page, "demo-offline-banner");

  await ferry.start();
  await waitOpen(hugo.page);
  await waitOpen(gina.page);
  await waitForText(gina.page, "sent while away");
  await waitForText(hugo.page, "sent while away");
  await hugo.page.waitForFunction(() => document.querySelector("#banner").hidden, WAIT);
  await new Promise((r) => setTimeout(r, 1000));
  for (const p of [gina.page, hugo.page]) {
    const copies = await p.$$eval("#messages li", (lis) =>
      lis.filter((li) => li.querySelector(".text").textContent === "sent while away").map((li) => [li.className, li.dataset.clientMsgId]),
    );
    assert.equal(copies.length, 1, JSON.stringify(copies));
    assert.equal(copies[0][1], queued, "the same clientMsgId");
    assert.doesNotMatch(copies[0][0], /queued/);
  }
  assert.deepEqual(await shown(gina.page), [
    [1, "before the outage"],
    [2, "sent while away"],
  ]);
  assert.equal(await text(hugo.page, "#send"), "Send");
  await screenshot(hugo.page, "demo-queued-sent");
  await gina.page.close();
  await hugo.page.close();
});

test("a peer id is checked before a chat opens", async () => {
  const ivy = await person("ivy");
  for (const [peer, why] of [
    ["not valid!", /not a valid user id/],
    ["a-b", /not a valid user id/],
    ["ivy", /that is you/],
    ["group:", /not a valid group id/],
  ]) {
    await openChatWith(ivy.page, peer);
    await ivy.page.waitForFunction(() => !document.querySelector("#peer-error").hidden, WAIT);
    assert.match(await text(ivy.page, "#peer-error"), why);
    assert.match(await text(ivy.page, "#chat-head"), /Open a chat on the left/);
    assert.equal(await ivy.page.$eval("#text", (e) => e.disabled), true);
  }
  await screenshot(ivy.page, "demo-peer-invalid");
  await openChatWith(ivy.page, "jack");
  await ivy.page.waitForFunction(() => document.querySelector("#peer-error").hidden, WAIT);
  assert.match(await text(ivy.page, "#chat-head"), /Chatting with jack/);
  await ivy.page.close();
  assert.deepEqual(pageErrors.flat(), []);
});
