/**
 * Headless Chromium for the browser test: the Debian package driven by
 * puppeteer-core over a pipe (no port, no browser download), with a fresh profile
 * and an environment of its own, and a record of what a page said.
 */

import puppeteer, { type Browser, type Page } from "puppeteer-core";

export type { Browser, Page };

export const CHROMIUM = "/usr/bin/chromium";

/**
 * Runs `body` with a fresh headless Chromium, closed (and its profile removed)
 * when `body` ends, however it ends. Close the browser before the server it
 * visits: an open event stream would keep the server's shutdown waiting.
 */
export async function withBrowser<T>(
  /** `acceptInsecureCerts`: trust a test server's self-signed certificate. */
  viewport: { width: number; height: number; acceptInsecureCerts?: boolean },
  body: (browser: Browser) => Promise<T>,
): Promise<T> {
  const profile = await Deno.makeTempDir({ prefix: "market-stream-chromium-" });
  let browser: Browser | undefined;
  try {
    if (!(await Deno.stat(CHROMIUM).then((info) => info.isFile, () => false))) {
      throw new Error(
        `no ${CHROMIUM}: install the Debian package chromium (apt-get install chromium)`,
      );
    }
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true,
      userDataDir: profile,
      // Without its own environment puppeteer hands Chromium all of ours.
      env: { PATH: "/usr/bin:/bin", HOME: profile },
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
      // Set at launch: setViewport on an open page may reload it.
      defaultViewport: { width: viewport.width, height: viewport.height, deviceScaleFactor: 1 },
      acceptInsecureCerts: viewport.acceptInsecureCerts ?? false,
      // The test runner owns the process's signals.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
    return await body(browser);
  } finally {
    await browser?.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** What a page said while the test ran: console lines, uncaught errors, dialogs. */
export interface PageLog {
  /** Console messages (CSP violations and failed loads among them) and uncaught errors. */
  readonly console: string[];
  /** alert/confirm/prompt dialogs the page tried to open; each is dismissed. */
  readonly dialogs: string[];
}

/** Starts recording what `page` says; call before it loads anything. */
export function recordPage(page: Page): PageLog {
  const log: PageLog = { console: [], dialogs: [] };
  page.on("console", (message) => log.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => log.console.push(`uncaught: ${error}`));
  page.on("dialog", (dialog) => {
    log.dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  return log;
}

/**
 * The little of a page's DOM that the probes in browser_test.ts read. Those
 * functions run in Chromium, not in Deno; the test module declares `document` with
 * these types for them, because the DOM lib itself would clash with Deno's own
 * types (TextDecoderStream, for one) everywhere else in the suite.
 */
export interface PageElement {
  readonly textContent: string | null;
  readonly dataset: Record<string, string | undefined>;
  readonly value: string;
  readonly outerHTML: string;
}

export interface PageDocument {
  readonly readyState: string;
  readonly documentElement: PageElement;
  getElementById(id: string): PageElement | null;
  querySelectorAll(selectors: string): ArrayLike<PageElement> & Iterable<PageElement>;
}

// What the functions given to page.evaluate see: they run in the page.
declare const document: PageDocument;

/** Polls `fn` in the page every 100 ms until it returns something truthy; returns that. */
export async function waitFor<Args extends unknown[], T>(
  page: Page,
  what: string,
  fn: (...args: Args) => T,
  options: { timeout?: number; args?: Args } = {},
): Promise<T> {
  const args = (options.args ?? []) as Args;
  try {
    const handle = await page.waitForFunction(
      fn as (...args: unknown[]) => T,
      { polling: 100, timeout: options.timeout ?? 10_000 },
      ...args,
    );
    const value = await handle.jsonValue();
    await handle.dispose();
    return value as T;
  } catch (error) {
    throw new Error(`waiting for ${what}: ${(error as Error).message}`);
  }
}

export const text = (page: Page, id: string) =>
  page.evaluate((id) => document.getElementById(id)?.textContent ?? "", id);
