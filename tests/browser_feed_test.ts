/**
 * A feed gap in a real browser, from end to end: the fake Finnhub streams AAPL
 * trades to the real producer, closes the connection and refuses the reconnect
 * with HTTP 503 for a few seconds; the producer writes the gap to the feed topic;
 * the dashboard consumer reads it back; headless Chromium shows it: both charts
 * shade it, the legend names its reason and length under the cursor, the
 * watchlist marks AAPL with GAP, the pipeline panel says "Finnhub live · 1
 * reconnect today", and every line breaks inside the gap: price, the RSI pane and
 * the compare chart (dashboard/static/gaps.js). `UPDATE_SCREENSHOT=1` writes
 * docs/feed-gap.png.
 */

import assert from "node:assert/strict";
import { type PageDocument, recordPage, text, waitFor, withBrowser } from "./helpers/browser.ts";
import { FakeFinnhub } from "./helpers/fake_finnhub.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";
import { startDashboardConsumer, startProducer } from "./helpers/processes.ts";
import { sleep } from "../lib/async.ts";

declare const document: PageDocument;

const SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/feed-gap.png", import.meta.url)
  : undefined;
const REFUSED_MS = 4_000;

/**
 * Whether a chart's drawn data (`el.drawn`: uPlot's [times, values]) breaks inside
 * [from, to]: a null point there, with prices before and after it.
 */
const breaksIn = (id: string, from: number, to: number) => {
  const el = document.getElementById(id) as unknown as { drawn?: (number | null)[][] };
  if (el.drawn === undefined) return false;
  const [times, values] = el.drawn;
  const i = times.findIndex((t, k) => t! >= from && t! <= to && values[k] === null);
  return i > 0 && values.slice(0, i).some((v) => v !== null) &&
    values.slice(i).some((v) => v !== null);
};

Deno.test("a feed gap in Chromium: shaded on both charts, named on hover, marked in the watchlist, every line broken", async () => {
  const fake = new FakeFinnhub();
  fake.pingEvery(1_000);
  try {
    await withTopic(1, async (topic) => {
      const env = {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: `${topic}-viewer`,
        FINNHUB_TOKEN: fake.token,
        FINNHUB_WS_URL: fake.url,
      };
      await using producer = startProducer(
        ["--symbols=AAPL", "--heartbeat=1", "--status-interval=0"],
        env,
      );
      await fake.waitForSubscribed(1, ["AAPL"], 30_000);
      const streaming = fake.stream({ symbols: ["AAPL"], rate: 40, count: 1_000_000 });
      await using dashboard = await startDashboardConsumer([], env);
      await withBrowser({ width: 1440, height: 900 }, async (browser) => {
        const page = await browser.newPage();
        const log = recordPage(page);
        await page.goto(`${dashboard.url}#symbol=AAPL&window=1m`);
        // RSI 14 has a value from the 15th candle: some before the gap.
        await waitFor(
          page,
          "the chart to fill",
          () => Number(document.getElementById("price-chart")!.dataset.points) >= 17,
          { timeout: 30_000 },
        );
        assert.match(await text(page, "stat-feed"), /^Finnhub live · 0 reconnects today$/);

        // The server restarts: a close, then 503 to every handshake for a while.
        fake.refuseFor(REFUSED_MS);
        fake.closeClients(1001, "server restart");
        await fake.waitForSubscribed(2, ["AAPL"], 20_000);
        await waitFor(
          page,
          "the gap on both charts",
          () =>
            Number(document.getElementById("price-chart")!.dataset.gaps) >= 1 &&
            Number(document.getElementById("candle-chart")!.dataset.gaps) >= 1,
        );
        assert.equal(await text(page, "stat-feed"), "Finnhub live · 1 reconnect today");
        const tag = await page.evaluate(() =>
          document.querySelectorAll(`#watchlist tr[data-symbol="AAPL"] .tag[data-feed="gap"]`)
            .length
        );
        assert.equal(tag, 1, "AAPL is marked GAP in the watchlist");

        // The cursor across the price chart: somewhere it is inside the gap, and the
        // legend names the reason and the length there.
        await sleep(2_000); // trades after the gap, so it sits inside the plot
        const box = (await (await page.$("#price-chart"))!.boundingBox())!;
        let legend = "";
        for (let x = box.x + 20; x < box.x + box.width - 80 && !legend.includes("gap"); x += 3) {
          await page.mouse.move(x, box.y + box.height / 2);
          legend = await text(page, "price-legend");
          if (/disconnected/.test(legend)) break;
        }
        assert.match(
          legend,
          /disconnected [\d.]+[sm]: closed by server, code 1001 "server restart"; then refused \d+ times? \(HTTP 503 at the handshake\)/,
        );
        const png = await page.screenshot();
        if (SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);

        // The RSI pane and the compare chart break inside the gap too.
        await page.click("input[name=rsi]");
        await page.click("#compare-toggle");
        const gaps = (await (await fetch(new URL("/api/feed", dashboard.url))).json()).gaps;
        const gap = gaps.find((g: { reason: string }) => g.reason === "disconnected");
        for (const id of ["rsi-chart", "compare-chart"]) {
          await waitFor(page, `${id} broken in the gap`, breaksIn, {
            args: [id, gap.tradeFrom, gap.tradeTo],
          });
        }
        // The page's breaker itself, as the page runs it: a gap of one symbol breaks
        // that symbol's compare line only, and a gap whose middle falls on a point breaks.
        const broken = await page.evaluate(async () => {
          const module = "/gaps.js"; // a path the page serves, not one for the type checker
          const { breakAtGaps, breakEach } = await import(module);
          const times = [0, 1000, 2000, 3000, 4000];
          const a = [1, 2, 3, 4, 5];
          const b = [6, 7, 8, 9, 10];
          const shown = (column: unknown[]) => column.map((v) => v === undefined ? "across" : v);
          const each = breakEach({ times, columns: [a, b], width: 1000 }, [[
            { tradeFrom: 1200, tradeTo: 1600 },
          ], []]);
          const middle = breakAtGaps({ times, columns: [a], width: 1000 }, [
            { tradeFrom: 1200, tradeTo: 2800 },
          ]);
          return {
            each: { times: each.times, columns: each.columns.map(shown) },
            middle: middle.columns[0],
          };
        });
        assert.deepEqual(broken.each, {
          times: [0, 1000, 1400, 2000, 3000, 4000],
          columns: [[1, 2, null, 3, 4, 5], [6, 7, "across", 8, 9, 10]],
        });
        assert.deepEqual(broken.middle, [1, 2, null, 4, 5]);
        const problems = log.console.filter((line) => /error|uncaught|violat/i.test(line));
        assert.deepEqual(problems, [], "no console errors");
      });
      fake.stopStreams();
      await streaming;
      producer.kill("SIGTERM");
      assert.equal((await producer.done).code, 0);
      dashboard.kill("SIGTERM");
      assert.equal((await dashboard.done).code, 0);
    });
  } finally {
    await fake.close();
  }
});
