// The demo page in a real headless Chromium (Debian's, never a downloaded build):
// two pages as two users chat both ways, a delayed message arrives after its delay,
// a notice is shown, acked, and not pushed again. Screenshots of both pages are
// saved under target/web-artifacts/.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import puppeteer from "puppeteer-core";

import { Ferry, repo } from "./support.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = join(repo, "target/web-artifacts");
const WAIT = { timeout: 20000 };
/** Short, so that the pages sit silent through it several times. */
const IDLE_SECS = 2;

let ferry;
let browser;
let profile;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  }
  ferry = await new Ferry({
    env: { FERRY_PIPELINE__NOTICE_REPUSH_SECS: "1", FERRY_SESSION__IDLE_TIMEOUT_SECS: String(IDLE_SECS) },
  }).start();
  profile = mkdtempSync(join(tmpdir(), "ferry-chromium-"));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
    ],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await ferry?.dispose();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function signIn(name) {
  // Each user in its own browser context, as two people on two machines.
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1100, height: 640 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${ferry.http}/demo`);
  await page.type("#name", name);
  await page.click("#join");
  await page.waitForFunction(() => document.querySelector("#state")?.textContent === "open", WAIT);
  return { page, errors };
}

/** The texts and seqs of the open chat, as shown. */
function shown(page) {
  return page.$$eval("#messages li", (lis) =>
    lis.map((li) => [Number(li.dataset.seq), li.querySelector(".text").textContent]),
  );
}

async function say(page, text) {
  await page.type("#text", text);
  await page.click("#send");
}

async function waitForText(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li .text")].some((e) => e.textContent === t),
    WAIT,
    text,
  );
}

test("two users chat in the demo, with a delayed message and an acked notice", async () => {
  const alice = await signIn("alice");
  const bob = await signIn("bob");

  // Alice opens a chat with bob and writes; bob sees alice appear and answers.
  await alice.page.type("#peer", "bob");
  await alice.page.click("#open-chat");
  await say(alice.page, "hi bob");
  await bob.page.waitForSelector('#contacts li[data-peer="alice"]', WAIT);
  await bob.page.click('#contacts li[data-peer="alice"]');
  await waitForText(bob.page, "hi bob");
  await say(bob.page, "hi alice");
  await waitForText(alice.page, "hi alice");
  assert.deepEqual(await shown(alice.page), [
    [1, "hi bob"],
    [2, "hi alice"],
  ]);
  assert.equal(await bob.page.$eval("#chat-head", (e) => e.textContent), "Chatting with alice single:alice-bob");

  // A delayed message: shown as scheduled to alice, delivered to bob after 2 s.
  await alice.page.type("#text", "see you in two seconds");
  await alice.page.$eval("#delay", (e) => (e.value = "2"));
  const sentAt = Date.now();
  await alice.page.click("#send-later");
  await alice.page.waitForSelector("#scheduled li", WAIT);
  await alice.page.screenshot({ path: join(ARTIFACTS, "demo-alice-scheduled.png") });
  await waitForText(bob.page, "see you in two seconds");
  const took = Date.now() - sentAt;
  assert.ok(took >= 2000, `delivered after ${took} ms`);
  await waitForText(alice.page, "see you in two seconds");
  assert.equal(await alice.page.$$eval("#scheduled li", (l) => l.length), 0);
  assert.deepEqual((await shown(bob.page)).at(-1), [3, "see you in two seconds"]);

  // A notice for bob: shown, pushed again while pending, acked, then no more pushes.
  await bob.page.click("#notice-me");
  await bob.page.waitForSelector("#notices li", WAIT);
  assert.match(await bob.page.$eval("#notices li", (e) => e.textContent), /Test notice for bob/);
  await bob.page.waitForFunction(() => Number(document.querySelector("#notices li").dataset.pushes) >= 2, WAIT);
  await bob.page.click("#notices li button.ack");
  await bob.page.waitForSelector("#notices li.acked", WAIT);
  const pushesAtAck = await bob.page.$eval("#notices li", (e) => Number(e.dataset.pushes));
  await new Promise((r) => setTimeout(r, 3000));
  const pushesLater = await bob.page.$eval("#notices li", (e) => Number(e.dataset.pushes));
  // One push may already have been on its way when the ack was sent.
  assert.ok(pushesLater <= pushesAtAck + 1, `pushed ${pushesLater - pushesAtAck} more times after the ack`);

  // Both tabs sit silent for 3x the idle timeout: Chromium's pongs keep them connected.
  await new Promise((r) => setTimeout(r, 3 * IDLE_SECS * 1000 + 500));
  for (const { page } of [alice, bob]) {
    assert.equal(await page.$eval("#state", (e) => e.textContent), "open");
    assert.doesNotMatch(await page.$eval("#log", (e) => e.textContent), /closed/);
  }
  await say(bob.page, "still here");
  await waitForText(alice.page, "still here");

  await alice.page.screenshot({ path: join(ARTIFACTS, "demo-alice.png") });
  await bob.page.screenshot({ path: join(ARTIFACTS, "demo-bob.png") });
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});
