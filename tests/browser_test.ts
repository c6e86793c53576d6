/**
 * The dashboard in a real browser, fed by the real pipeline: `deno task demo`
 * runs the simulated producer and the consumer's dashboard against the real
 * broker, and headless Chromium (puppeteer-core, tests/helpers/browser.ts) opens
 * the page.
 *
 * The topic is pre-filled with ten minutes of simulated history, so this also shows
 * that the charts open full: the consumer rebuilds them from Kafka on start.
 * The screenshot is docs/dashboard.png, shown at the top of the README.
 */

import assert from "node:assert/strict";
import { createMarket, profileFor } from "../producer/market_sim.ts";
import { encodeTrade, type Trade } from "../lib/trade.ts";
import {
  type Page,
  type PageDocument,
  type PageLog,
  recordPage,
  text,
  waitFor,
  withBrowser,
} from "./helpers/browser.ts";
import { sendTrades, uniqueName, withTopic } from "./helpers/kafka.ts";
import { freePort } from "./helpers/ports.ts";
import { ROOT } from "../tools/scripts.ts";

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "BINANCE:ETHUSDT"];
const XSS = "<img src=x onerror=alert(1)>";
/**
 * The README's picture. Every run takes the screenshot and checks it; only
 * `UPDATE_SCREENSHOT=1 deno task test` replaces the committed file, so a test run
 * never leaves the work tree modified.
 */
const SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/dashboard.png", import.meta.url)
  : undefined;
const HISTORY_MS = 10 * 60_000;

// What the functions given to page.evaluate and waitFor see: they run in the page.
declare const document: PageDocument;
declare const location: { readonly hash: string };
declare function requestAnimationFrame(callback: () => void): number;
/** A token in the environment of the whole pipeline: it must never reach the page. */
const SECRET = "fh-secret-0d9b7c1e";

/**
 * Ten minutes of the simulated market, scaled so each symbol ends at its start
 * price: the live producer starts there, and the chart joins without a jump.
 */
function history(now: number): Trade[] {
  const market = createMarket({ symbols: SYMBOLS, seed: 11, rate: 40, start: now - HISTORY_MS });
  const trades: Trade[] = [];
  for (let trade = market.next(); trade.time < now - 1000; trade = market.next()) {
    trades.push(trade);
  }
  const last = new Map(trades.map((trade) => [trade.symbol, trade.price]));
  return trades.map((trade) => {
    const { price: start, tick } = profileFor(trade.symbol);
    const decimals = Math.max(0, -Math.floor(Math.log10(tick)));
    const scaled = Math.round((trade.price * start) / last.get(trade.symbol)! / tick) * tick;
    return { ...trade, price: Number(scaled.toFixed(decimals)) };
  });
}

/** The demo as a user starts it (`deno task demo`), its output collected for the assertions. */
function startDemo(env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "demo"],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const url = Promise.withResolvers<string>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text;
      const match = /market-stream is running: (\S+)/.exec(output);
      if (match) url.resolve(match[1]);
    }
  };
  const done = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => child.status);
  done.then(() => url.reject(new Error(`the demo ended before serving:\n${output}`)));
  const timer = setTimeout(() => url.reject(new Error(`no URL in 30 s:\n${output}`)), 30_000);
  url.promise.catch(() => {}).finally(() => clearTimeout(timer));
  return { child, url: url.promise, done, output: () => output };
}

/** What the page and the server hold, for a failure message. */
async function describe(page: Page, log: PageLog, url: string): Promise<string> {
  const dom = await page.evaluate(() =>
    JSON.stringify({
      hash: location.hash,
      symbol: document.getElementById("quote-symbol")?.textContent,
      chart: { ...document.getElementById("price-chart")?.dataset },
      stream: document.getElementById("connection-text")?.textContent,
    })
  ).catch((error) => String(error));
  const api = await fetch(new URL("/api/symbols", url)).then((r) => r.text()).catch(String);
  return `page: ${dom}\nserver: ${api.slice(0, 1500)}\nconsole: ${log.console.join("\n")}`;
}

const dataset = (page: Page, id: string, key: string) =>
  page.evaluate((id, key) => Number(document.getElementById(id)?.dataset[key]), id, key);
/** The picker's options: their values, or the text they show. */
const pickerOptions = (page: Page, what: "value" | "textContent") =>
  page.evaluate(
    (what) => [...document.querySelectorAll("#symbol-picker option")].map((option) => option[what]),
    what,
  );

Deno.test("the dashboard in Chromium: live charts for every symbol from the real pipeline", async (t) => {
  await withTopic(3, async (topic, kafka) => {
    const now = Date.now();
    const producer = kafka.producer();
    await producer.connect();
    const trades = history(now);
    await sendTrades(producer, topic, trades, now);

    const demo = startDemo({
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName("dashboard-test"),
      DASHBOARD_HOST: "127.0.0.1",
      DASHBOARD_PORT: String(freePort()),
      SYMBOLS: SYMBOLS.join(","),
      SOURCE: "sim",
      FINNHUB_TOKEN: SECRET,
    });
    try {
      const url = await demo.url;
      // Closed before the demo is stopped: an open event stream would hold up its server.
      await withBrowser({ width: 1440, height: 900 }, async (browser) => {
        const page = await browser.newPage();
        const log = recordPage(page);
        // A failed step says what the page and the server held at that moment.
        const step = (name: string, body: () => Promise<void>) =>
          t.step(name, async () => {
            try {
              await body();
            } catch (error) {
              throw new Error(`${(error as Error).message}\n${await describe(page, log, url)}`);
            }
          });
        await page.goto(`${url}#symbol=AAPL&window=5m`);
        await waitFor(
          page,
          "the page to load and connect",
          () =>
            document.readyState === "complete" &&
            document.getElementById("connection-text")?.textContent === "live",
        );

        await step("the charts open full, from Kafka's history", async () => {
          const points = await waitFor(page, "the AAPL chart to fill", () => {
            const points = Number(document.getElementById("price-chart")!.dataset.points);
            return points > 200 ? points : 0;
          }, { timeout: 15_000 });
          assert.ok(points > 200 && points <= 301, `${points} one-second candles in 5 minutes`);
          const candles = await dataset(page, "candle-chart", "points");
          assert.ok(candles >= 55 && candles <= 61, `${candles} five-second candles`);
          assert.equal(await text(page, "source-badge"), "SIMULATED");
          assert.equal(await text(page, "stat-kafka"), "connected");
        });

        await step("every symbol's chart gains points as trades flow", async () => {
          const options = await pickerOptions(page, "value");
          assert.deepEqual(options, [...SYMBOLS].sort());
          for (const symbol of options) {
            // A click on the symbol's watchlist row, as a user picks one.
            const row = await page.$(`#watchlist tr[data-symbol=${JSON.stringify(symbol)}]`);
            assert.ok(row, `${symbol}'s watchlist row`);
            await row.click();
            await row.dispose();
            const first = await waitFor(page, `${symbol}'s chart`, (symbol) => {
              const chart = document.getElementById("price-chart")!;
              const shown = document.getElementById("quote-symbol")!.textContent === symbol;
              return shown ? Number(chart.dataset.last) : 0;
            }, { args: [symbol] });
            await waitFor(
              page,
              `${symbol}'s chart to gain new points`,
              (after) => Number(document.getElementById("price-chart")!.dataset.last) >= after,
              { args: [first + 2000] },
            );
          }
        });

        await step("the stats panel moves", async () => {
          const applied = await text(page, "stat-applied");
          const age = await text(page, "stat-age");
          await waitFor(
            page,
            "the applied count to change",
            (before) => document.getElementById("stat-applied")!.textContent !== before,
            { args: [applied] },
          );
          assert.notEqual(await text(page, "stat-age"), "none yet", age);
          // Trades per second as lib/format.js writes a rate: "48.5", "1,234", "56.8k".
          assert.match(await text(page, "stat-tps"), /^[1-9][\d.,]*k?$/);
          assert.match(await text(page, "stat-p50"), /ms$/);
          assert.equal(await text(page, "stat-stream"), "live");
          const pushes = Number(await text(page, "stat-pushes"));
          assert.ok(pushes > 0 && pushes <= 21, `${pushes} updates/s`);
        });

        await step("the charts redraw at most once per animation frame", async () => {
          const { frames, draws } = await page.evaluate(() =>
            new Promise<{ frames: number; draws: number }>((resolve) => {
              const chart = document.getElementById("price-chart")!;
              const first = Number(chart.dataset.draws);
              const start = performance.now();
              let frames = 0;
              const count = () => {
                frames++;
                if (performance.now() - start < 2000) requestAnimationFrame(count);
                else resolve({ frames, draws: Number(chart.dataset.draws) - first });
              };
              requestAnimationFrame(count);
            })
          );
          assert.ok(draws >= 10, `${draws} redraws in 2 s: the chart is not live`);
          assert.ok(draws <= frames, `${draws} redraws in ${frames} frames`);
        });

        await step("screenshot: docs/dashboard.png", async () => {
          await page.select("#symbol-picker", "BINANCE:BTCUSDT");
          await waitFor(
            page,
            "BTCUSDT's chart",
            () =>
              document.getElementById("quote-symbol")!.textContent === "BINANCE:BTCUSDT" &&
              Number(document.getElementById("price-chart")!.dataset.points) > 200,
          );
          await new Promise((resolve) => setTimeout(resolve, 1500));
          const png = await page.screenshot();
          assert.ok(png.length > 50_000, `a ${png.length} byte screenshot is not a dashboard`);
          assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
          if (SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);
        });

        await step("a hostile symbol is shown as text", async () => {
          await producer.send({
            topic,
            messages: [{
              key: XSS,
              value: encodeTrade({ symbol: XSS, price: 1, volume: 1, time: Date.now() }, "sim"),
              timestamp: String(Date.now()),
            }],
          });
          await waitFor(
            page,
            "the hostile symbol's row",
            (symbol) =>
              [...document.querySelectorAll("#watchlist tr")]
                .some((row) => row.dataset.symbol === symbol),
            { args: [XSS] },
          );
          const shown = await pickerOptions(page, "textContent");
          assert.ok(shown.includes(XSS), "the picker shows the symbol's text");
          assert.equal(await page.evaluate(() => document.querySelectorAll("img").length), 0);
          assert.deepEqual(log.dialogs, []);
        });

        await step("no secret reaches the page", async () => {
          const html = await page.evaluate(() => document.documentElement.outerHTML);
          assert.ok(!html.includes(SECRET));
          for (const path of ["/api/symbols", "/healthz", "/events?window=1m"]) {
            const response = await fetch(new URL(path, url));
            let body: string;
            if (path.startsWith("/events")) {
              // A stream never ends: its first bytes, then let it go.
              const reader = response.body!.getReader();
              body = new TextDecoder().decode((await reader.read()).value);
              await reader.cancel();
            } else {
              body = await response.text();
            }
            assert.ok(body.length > 100 && !body.includes(SECRET), path);
          }
        });

        const problems = log.console.filter((line) => /error|refused|uncaught|violat/i.test(line));
        assert.deepEqual(problems, [], "no console errors and no CSP violations");
      });
    } finally {
      await producer.disconnect();
      demo.child.kill("SIGINT");
    }
    const status = await demo.done;
    assert.equal(status.code, 0, demo.output());
    assert.match(demo.output(), /demo: stopped/);
    assert.match(demo.output(), /offsets committed/);
    assert.ok(!demo.output().includes(SECRET), "the demo's output shows no token");
  });
});
