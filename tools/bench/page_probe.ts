/**
 * The real page as a client of the bench's dashboard phase: headless Chromium
 * (tests/helpers/browser.ts, the browser tests' launcher) opens the dashboard at
 * SYMBOL and WINDOW, turns on all four indicators as a user does (SMA, EMA,
 * Bollinger Bands, RSI), and notes every event its EventSource receives.
 *
 *   page_probe.ts --url=URL --symbol=SYMBOL --window=WINDOW
 *
 * Prints `ready` once the indicators are drawn; on SIGTERM one JSON line:
 * {"studies", "pushes": [[readAt, sentAt], …], "requests": [paths asked for after ready]}
 * and exits. Run by tools/bench/dashboard.ts with the `bench-page` permission set.
 */

import { exitCodeFor, parseFlags, UsageError } from "../../lib/cli.ts";
import { type PageDocument, waitFor, withBrowser } from "../../tests/helpers/browser.ts";

// What the functions given to page.evaluate see: they run in the page.
declare const document: PageDocument;

/** Runs in the page before its scripts: every snapshot or delta, read time and server time. */
function notePushes(): void {
  const scope = globalThis as unknown as Record<string, unknown>;
  const Native = scope.EventSource as new (url: string) => {
    addEventListener(type: string, listener: (event: { data: string }) => void): void;
  };
  const pushes: [number, number | null][] = [];
  scope.benchPushes = pushes;
  scope.EventSource = class extends Native {
    constructor(url: string) {
      super(url);
      const note = (event: { data: string }) => {
        let sentAt: number | null = null;
        try {
          sentAt = JSON.parse(event.data).now ?? null;
        } catch { /* not JSON: still a push */ }
        pushes.push([Date.now(), sentAt]);
      };
      this.addEventListener("snapshot", note);
      this.addEventListener("delta", note);
    }
  };
}

export async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    url: { type: "string" },
    symbol: { type: "string" },
    window: { type: "string" },
  });
  const { url, symbol, window } = flags;
  if (!url || !symbol || !window) throw new UsageError("--url, --symbol and --window are needed");
  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGTERM", stopped.resolve);
  try {
    await withBrowser({ width: 1440, height: 900 }, async (browser) => {
      const page = await browser.newPage();
      const requests: string[] = [];
      page.on("request", (request) => requests.push(new URL(request.url()).pathname));
      await page.evaluateOnNewDocument(notePushes);
      await page.goto(`${url}#symbol=${encodeURIComponent(symbol)}&window=${window}`);
      // A loaded machine (CI, the bench's own runs) can take a while: 30 s, not 10.
      const timeout = 30_000;
      const bar = () => document.querySelectorAll("input[name=rsi]").length > 0;
      await waitFor(page, "the indicator bar", bar, { timeout });
      for (const name of ["sma", "ema", "bollinger", "rsi"]) {
        await page.click(`input[name=${name}]`);
      }
      const studies = await waitFor(page, "four indicators drawn", () => {
        const shown = document.getElementById("price-chart")?.dataset.studies ?? "";
        return shown.split(",").length === 4 ? shown : "";
      }, { timeout });
      const before = requests.length;
      console.log("ready");
      await stopped.promise;
      const pushes = await page.evaluate(() => (globalThis as Record<string, unknown>).benchPushes);
      console.log(JSON.stringify({ studies, pushes, requests: requests.slice(before) }));
    });
  } finally {
    Deno.removeSignalListener("SIGTERM", stopped.resolve);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args).catch(exitCodeFor));
