// Debian's headless Chromium (never a downloaded build) driven by puppeteer-core,
// and the demo page's common steps.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import puppeteer from "puppeteer-core";

import { repo } from "./support.mjs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = join(repo, "target/web-artifacts");
export const WAIT = { timeout: 20000 };

export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  }
  const profile = mkdtempSync(join(tmpdir(), "ferry-chromium-"));
  const browser = await puppeteer.launch({
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
  return {
    browser,
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A new browser context (a person on their own machine) with the demo open, signed in. */
export async function signIn(browser, ferry, name) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1100, height: 640 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${ferry.http}/demo`);
  await page.type("#name", name);
  await page.click("#join");
  await waitOpen(page);
  return { page, errors };
}

export function waitOpen(page) {
  return page.waitForFunction(() => document.querySelector("#state")?.textContent === "open", WAIT);
}

/** The seqs and texts of the open chat, as shown (queued messages have seq 0). */
export function shown(page) {
  return page.$$eval("#messages li", (lis) =>
    lis.map((li) => [Number(li.dataset.seq ?? 0), li.querySelector(".text").textContent]),
  );
}

export async function say(page, text) {
  await page.type("#text", text);
  await page.click("#send");
}

export async function waitForText(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li:not(.queued) .text")].some((e) => e.textContent === t),
    WAIT,
    text,
  );
}

export async function openChatWith(page, peer) {
  await page.$eval("#peer", (e) => (e.value = ""));
  await page.type("#peer", peer);
  await page.click("#open-chat");
}

export function screenshot(page, name) {
  return page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}
