/**
 * Indicators, the exchange clock, session marks and the CSV button in a real
 * browser. An hour of simulated AAPL trades around a recent US open (09:30 New
 * York) goes into Kafka; the real dashboard consumer rebuilds its candles from
 * there; headless Chromium turns every indicator on and the test checks that
 * they are drawn, that the values the page holds are lib/indicators.js's for the
 * candles the server has, that the choices survive a reload, that the session
 * open is marked, and that the CSV button downloads the candles in view.
 * `UPDATE_SCREENSHOT=1` writes docs/indicators.png.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { createMarket } from "../producer/market_sim.ts";
import type { Trade } from "../lib/trade.ts";
import { formatCandleCsv, formatClock } from "../lib/format.js";
import { compute } from "../lib/indicators.js";
import { usSessionMarks } from "../lib/calendar.js";
import {
  type Page,
  type PageDocument,
  recordPage,
  waitFor,
  withBrowser,
} from "./helpers/browser.ts";
import { BROKERS, sendTrades, uniqueName, withTopic } from "./helpers/kafka.ts";
import { startDashboardConsumer } from "./helpers/processes.ts";

declare const document: PageDocument;

const SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/indicators.png", import.meta.url)
  : undefined;

/** The most recent weekday's 09:30 New York open before today (within Kafka's retention). */
function recentOpen(now: number): number {
  for (let day = 1; day <= 7; day++) {
    const start = Date.UTC(
      new Date(now).getUTCFullYear(),
      new Date(now).getUTCMonth(),
      new Date(now).getUTCDate() - day,
    );
    const open = usSessionMarks(start, start + 86_400_000 - 1).find((m) => m.kind === "open");
    if (open !== undefined) return open.at;
  }
  throw new Error("no weekday in a week");
}

interface Held {
  studies: string;
  /** The candles held: the view (the window) starts at `from`, the rest is warm-up. */
  times: number[];
  close: number[];
  from: number;
  values: ReturnType<typeof compute>;
  overlays: (number | null)[][];
  ms: number;
}

/** What the page holds for its indicators (studies.js leaves it on the chart element). */
const held = (page: Page) =>
  page.evaluate(() => {
    const el = document.getElementById("price-chart") as unknown as {
      dataset: Record<string, string>;
      studies: Omit<Held, "studies">;
    };
    return { ...el.studies, studies: el.dataset.studies };
  }) as Promise<Held>;

/** Pixels of a colour on the canvases under an element: proof a line was drawn. */
const pixels = (page: Page, id: string, rgb: [number, number, number]) =>
  page.evaluate(
    (id, rgb) => {
      const canvas = (document.getElementById(id) as unknown as {
        querySelector(s: string): {
          width: number;
          height: number;
          getContext(k: string): {
            getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
          };
        };
      }).querySelector("canvas");
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        const near = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) +
          Math.abs(data[i + 2] - rgb[2]);
        if (near < 40) count++;
      }
      return count;
    },
    id,
    rgb,
  );

Deno.test("indicators in Chromium: drawn, equal to lib/indicators.js, remembered; session open marked; CSV download", async () => {
  const open = recentOpen(Date.now());
  const start = open - 30 * 60_000;
  const market = createMarket({ symbols: ["AAPL"], seed: 7, rate: 3, start });
  const trades: Trade[] = [];
  for (let trade = market.next(); trade.time < open + 32 * 60_000; trade = market.next()) {
    trades.push(trade);
  }
  await withTopic(1, async (topic, kafka) => {
    const producer = kafka.producer();
    await producer.connect();
    await sendTrades(producer, topic, trades);
    await producer.disconnect();
    const downloads = await Deno.makeTempDir({ prefix: "market-stream-csv-" });
    await using dashboard = await startDashboardConsumer([
      `--from=${new Date(start).toISOString()}`,
    ], {
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName("studies"),
    });
    try {
      // Every trade applied before the page opens: its candles stay as they are.
      const lastTrade = trades.at(-1)!.time;
      for (let i = 0; i < 200; i++) {
        const url = new URL("/api/candles?symbol=AAPL&interval=1s", dashboard.url);
        const response = await fetch(url);
        const body = response.ok ? await response.json() : await response.body?.cancel();
        if (body?.candles.at(-1)?.[0] >= Math.floor(lastTrade / 1000) * 1000) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await withBrowser({ width: 1440, height: 900 }, async (browser) => {
        const page = await browser.newPage();
        const log = recordPage(page);
        await page.goto(`${dashboard.url}#symbol=AAPL&window=1h`);
        const points = await waitFor(page, "an hour of candles", () => {
          const points = Number(document.getElementById("price-chart")!.dataset.points);
          return points > 2000 ? points : 0;
        }, { timeout: 20_000 }).catch(async (error) => {
          const chart = await page.evaluate(() =>
            JSON.stringify(document.getElementById("price-chart")!.dataset)
          );
          throw new Error(`${error.message}\nchart: ${chart}\nconsole: ${log.console.join("\n")}`);
        });
        assert.equal((await held(page)).studies, "", "no indicator before one is chosen");

        // Every indicator on, EMA's period changed to 9, as a user does it.
        for (const name of ["sma", "ema", "bollinger", "rsi"]) {
          await page.click(`input[name=${name}]`);
        }
        await page.click("input[name=ema-period]", { count: 3 });
        await page.keyboard.type("9");
        await page.keyboard.press("Tab");
        await waitFor(
          page,
          "the indicators",
          () => document.getElementById("price-chart")!.dataset.studies === "SMA 20,EMA 9,BB,RSI",
        );
        await new Promise((resolve) => setTimeout(resolve, 300)); // the frame after
        const page1 = await held(page);
        assert.equal(page1.close.length - page1.from, points);
        const mine = compute(page1.close, { sma: 20, ema: 9, bollinger: true, rsi: true });
        assert.deepEqual(page1.values, mine, "the page holds lib/indicators.js's values");
        assert.deepEqual(page1.overlays[0], mine.sma!.slice(page1.from), "the SMA line is the SMA");
        assert.deepEqual(page1.overlays[2], mine.bollinger!.upper.slice(page1.from));
        // The same candles as the server's one-second candles in the window.
        const api = await (await fetch(
          new URL(`/api/candles?symbol=AAPL&interval=1s&from=${page1.times[0]}`, dashboard.url),
        )).json();
        assert.deepEqual(api.candles.map((row: number[]) => row[4]), page1.close);
        // Drawn: SMA violet and EMA cyan on the price chart, the RSI pane shown.
        assert.ok(await pixels(page, "price-chart", [192, 132, 252]) > 200, "SMA drawn");
        assert.ok(await pixels(page, "price-chart", [34, 211, 238]) > 200, "EMA drawn");
        assert.ok(await pixels(page, "rsi-chart", [34, 211, 238]) > 200, "RSI drawn");
        assert.equal(Number(await dataset(page, "sessionMarks")), 1, "the open is in view");

        // The exchange clock, remembered with the indicators across a reload.
        await page.click("#zone-toggle");
        assert.equal(await dataset(page, "zone"), "America/New_York");
        await page.reload();
        await waitFor(
          page,
          "the indicators after a reload",
          () =>
            document.getElementById("price-chart")!.dataset.studies === "SMA 20,EMA 9,BB,RSI" &&
            Number(document.getElementById("price-chart")!.dataset.points) > 2000,
        );
        assert.equal(await dataset(page, "zone"), "America/New_York");
        assert.equal(
          await page.evaluate(() => document.getElementById("zone-toggle")!.textContent),
          "Time: ET",
        );
        const legend = await page.evaluate(() =>
          document.getElementById("price-legend")!.textContent
        );
        const lastTime = (await held(page)).times.at(-1)!;
        assert.ok(
          legend!.startsWith(formatClock(lastTime, "America/New_York")),
          `the legend reads New York time: ${legend}`,
        );

        // The CSV button: the candles in view, as the server would write them.
        const session = await page.createCDPSession();
        await session.send("Browser.setDownloadBehavior", {
          behavior: "allow",
          downloadPath: downloads,
        });
        const shown = await held(page);
        await page.click("#csv-download");
        const file = await waitForFile(downloads);
        const csv = await Deno.readTextFile(join(downloads, file));
        const rows = api.candles.filter((row: number[]) => row[0] >= shown.times[shown.from]);
        assert.equal(csv, formatCandleCsv(rows));
        // The server names the file of the same candles exactly as the page does.
        const server = await fetch(
          new URL(
            `/api/candles?symbol=AAPL&interval=1s&format=csv&from=${rows[0][0]}`,
            dashboard.url,
          ),
        );
        await server.body?.cancel();
        assert.equal(server.headers.get("content-disposition"), `attachment; filename="${file}"`);
        await session.detach();
        const png = await page.screenshot();
        if (SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);

        await warmUpSteps(page, dashboard.url);
        const problems = log.console.filter((line) => /error|uncaught|violat/i.test(line));
        assert.deepEqual(problems, [], "no console errors");
      });
      dashboard.kill("SIGTERM");
      assert.equal((await dashboard.done).code, 0);
    } finally {
      await Deno.remove(downloads, { recursive: true });
    }
  });
});

/**
 * The indicators do not depend on the window they are seen in: the hub sends 500
 * candles before the window (hub.ts WARMUP_CANDLES) and the page computes over them.
 * On the 5m window SMA 500 is whole from the left edge and equals SMA 500 over the
 * hub's candles; EMA 50 at the last candle reads the same on the 5m and 1m windows.
 */
async function warmUpSteps(page: Page, url: string) {
  for (const [name, period] of [["sma", "500"], ["ema", "50"]]) {
    await page.click(`input[name=${name}-period]`, { count: 3 });
    await page.keyboard.type(period);
    await page.keyboard.press("Tab");
  }
  const onWindow = async (name: string, most: number) => {
    await page.click(`#window-picker button[data-window="${name}"]`);
    await waitFor(page, `the ${name} window with its warm-up`, (most: number) => {
      const el = document.getElementById("price-chart")!;
      const points = Number(el.dataset.points);
      return el.dataset.studies === "SMA 500,EMA 50,BB,RSI" && points > 0 && points <= most;
    }, { args: [most] });
    await new Promise((resolve) => setTimeout(resolve, 300)); // the frame after
    return await held(page);
  };
  const wide = await onWindow("5m", 301);
  assert.equal(wide.from, 500, "500 candles of warm-up before the window");
  const first = wide.values.sma![wide.from];
  assert.ok(typeof first === "number", "SMA 500 is whole from the window's left edge");
  assert.equal(wide.overlays[0][0], first, "and drawn there");
  const api = await (await fetch(
    new URL("/api/candles?symbol=AAPL&interval=1s&format=json", url),
  )).json();
  const times = api.candles.map((row: number[]) => row[0]);
  const reference = compute(api.candles.map((row: number[]) => row[4]), {
    sma: 500,
    ema: null,
    bollinger: false,
    rsi: false,
  }).sma![times.indexOf(wide.times[wide.from])]!;
  // The same 500 closes; the running sum's rounding depends on where the series starts.
  assert.ok(Math.abs(first - reference) <= 1e-9 * reference, `${first} vs ${reference}`);

  const narrow = await onWindow("1m", 61);
  assert.equal(narrow.times.at(-1), wide.times.at(-1), "the same last candle");
  const [a, b] = [narrow.values.ema!.at(-1)!, wide.values.ema!.at(-1)!];
  // Seeded 560 and 800 candles back: the seeds' difference has shrunk by (49/51)^510 ≈ 1e-9.
  assert.ok(Math.abs(a - b) <= 1e-9 * b, `EMA 50 on 1m ${a} vs on 5m ${b}`);
}

const dataset = (page: Page, key: string) =>
  page.evaluate((key) => document.getElementById("price-chart")!.dataset[key], key);

async function waitForFile(dir: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.endsWith(".csv")) return entry.name;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no CSV downloaded into ${dir} in 10 s`);
}
