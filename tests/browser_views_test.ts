/**
 * The dashboard's views of issue 12 in a real browser: the simulated producer and
 * the dashboard consumer on the real broker, headless Chromium at 390×844 (an
 * iPhone 12–15's CSS pixels). On the phone: one column, no sideways scrolling, the
 * price chart the width of the screen, the page live (`UPDATE_SCREENSHOT=1` writes
 * docs/phone.png). The watchlist: sparklines, sorting that is remembered, the
 * ↑/↓ and 1–4 keys.
 */

import assert from "node:assert/strict";
import {
  type Page,
  type PageDocument,
  recordPage,
  text,
  waitFor,
  withBrowser,
} from "./helpers/browser.ts";
import { BROKERS, uniqueName, withTopic } from "./helpers/kafka.ts";
import { formatPct, formatRate } from "../lib/format.js";
import { startDashboardConsumer, startProducer } from "./helpers/processes.ts";

declare const document: PageDocument & {
  documentElement: { scrollWidth: number; clientWidth: number };
  activeElement: { blur(): void };
};
declare const location: { readonly hash: string };
declare function getComputedStyle(el: unknown): { display: string };
declare class Event {
  constructor(type: string);
}

const COMPARE_SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/compare.png", import.meta.url)
  : undefined;
const display = (page: Page, selector: string) =>
  page.$eval(selector, (el) => getComputedStyle(el).display);
const chipSymbols = (page: Page) =>
  page.evaluate(() =>
    [...document.querySelectorAll("#compare-chips .compare-chip")].map((chip) =>
      chip.dataset.symbol!
    )
  );
const tableSort = (page: Page) =>
  page.evaluate(() => document.getElementById("watchlist-table")!.dataset.sort);
const rowOrder = (page: Page) =>
  page.evaluate(() =>
    [...document.querySelectorAll("#watchlist tr")].map((row) => row.dataset.symbol!)
  );

interface Sorted {
  sort: string;
  rows: { symbol: string; value: string; change: string; tps: string }[];
}

/**
 * Sorts the watchlist by a header's click or the picker, and reads in the same
 * moment (one task of the page: no push between) the rows' order, the value each
 * was sorted by, and the change and trades/s the rows show.
 */
const sortBy = (page: Page, how: { head?: string; picker?: string }) =>
  page.evaluate((how): Sorted => {
    if (how.head !== undefined) {
      // deno-lint-ignore no-explicit-any
      (document.querySelectorAll(`#watchlist-table th[data-sort="${how.head}"]`)[0] as any)
        .click();
    } else {
      // deno-lint-ignore no-explicit-any
      const picker = document.getElementById("watchlist-sort") as any;
      picker.value = how.picker;
      picker.dispatchEvent(new Event("change"));
    }
    return {
      sort: document.getElementById("watchlist-table")!.dataset.sort!,
      // deno-lint-ignore no-explicit-any
      rows: [...document.querySelectorAll("#watchlist tr")].map((row: any) => ({
        symbol: row.dataset.symbol,
        value: row.dataset.sortValue,
        change: row.cells[3].textContent,
        tps: row.cells[4].textContent,
      })),
    };
  }, how);

/** Rows in the order `sort` ("change desc"): by value, ties by name; names A to Z. */
function assertSorted({ sort, rows }: Sorted, expected: string) {
  assert.equal(sort, expected);
  assert.equal(rows.length, SYMBOLS.length);
  const [key, way] = expected.split(" ");
  const value = (row: Sorted["rows"][number]) => key === "name" ? row.symbol : Number(row.value);
  for (let i = 1; i < rows.length; i++) {
    const [a, b] = [value(rows[i - 1]), value(rows[i])];
    const inOrder = a === b ? rows[i - 1].symbol < rows[i].symbol : (a < b) === (way === "asc");
    assert.ok(inOrder, `${expected}: ${rows[i - 1].symbol} (${a}) then ${rows[i].symbol} (${b})`);
  }
}

/** Every symbol's session volume, as the server has it now. */
async function volumes(url: string): Promise<Record<string, number>> {
  const { symbols } = await (await fetch(new URL("/api/symbols", url))).json();
  return Object.fromEntries(
    symbols.map((s: { symbol: string; volume: number }) => [s.symbol, s.volume]),
  );
}

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "BINANCE:ETHUSDT"];
const PHONE = { width: 390, height: 844 };
const SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/phone.png", import.meta.url)
  : undefined;

Deno.test("the dashboard in Chromium: a 390×844 phone in one column, the watchlist's sparklines, sorting and keys, compare", async (t) => {
  await withTopic(1, async (topic) => {
    const env = {
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      KAFKA_GROUP_ID: uniqueName("phone-viewer"),
      SYMBOLS: SYMBOLS.join(","),
    };
    await using producer = startProducer(["--source=sim", "--rate=60", "--seed=7"], env);
    await using dashboard = await startDashboardConsumer([], env);
    await withBrowser(PHONE, async (browser) => {
      const page = await browser.newPage();
      const log = recordPage(page);
      await page.goto(`${dashboard.url}#symbol=AAPL&window=1m`);
      await waitFor(
        page,
        "the page to connect and chart AAPL",
        () =>
          document.getElementById("connection-text")?.textContent === "live" &&
          Number(document.getElementById("price-chart")!.dataset.points) >= 3,
        { timeout: 20_000 },
      );

      await t.step("no horizontal overflow, a chart the width of the screen", async () => {
        const layout = await page.evaluate(() => {
          // deno-lint-ignore no-explicit-any
          const box = (id: string) => (document.getElementById(id) as any).getBoundingClientRect();
          const chart = box("price-chart");
          const watchlist = box("watchlist");
          const header = document.querySelectorAll(".topbar")[0] as unknown as {
            scrollWidth: number;
            clientWidth: number;
          };
          return {
            scrollWidth: document.documentElement.scrollWidth,
            chartWidth: chart.width,
            chartLeft: chart.left,
            watchlistTop: watchlist.top,
            chartBottom: chart.bottom,
            header: [header.scrollWidth, header.clientWidth],
            canvases: [...document.querySelectorAll("#price-chart canvas")].map((c) =>
              // deno-lint-ignore no-explicit-any
              (c as any).getBoundingClientRect().width
            ),
          };
        });
        assert.ok(layout.scrollWidth <= PHONE.width, `page ${layout.scrollWidth} px wide`);
        assert.ok(layout.chartWidth >= 330, `price chart ${layout.chartWidth} px wide`);
        assert.ok(layout.canvases[0] >= 330, `chart canvas ${layout.canvases[0]} px wide`);
        assert.ok(layout.chartLeft >= 0, "the chart starts on screen");
        assert.ok(layout.watchlistTop >= layout.chartBottom, "the watchlist follows the charts");
        assert.ok(layout.header[0] <= layout.header[1], `header cut off: ${layout.header}`);
      });

      await t.step("the page is live and the watchlist switches symbols", async () => {
        const before = Number(
          await page.evaluate(() => document.getElementById("price-chart")!.dataset.last),
        );
        await waitFor(
          page,
          "the chart to gain points",
          (after) => Number(document.getElementById("price-chart")!.dataset.last) >= after,
          { args: [before + 2000] },
        );
        const row = await page.$(`#watchlist tr[data-symbol="MSFT"]`);
        assert.ok(row, "MSFT's row");
        await row.click();
        await row.dispose();
        await waitFor(
          page,
          "MSFT's chart",
          () =>
            document.getElementById("quote-symbol")!.textContent === "MSFT" &&
            Number(document.getElementById("price-chart")!.dataset.points) >= 3,
        );
        assert.equal(await text(page, "connection-text"), "live");
        const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(scrollWidth <= PHONE.width, `page ${scrollWidth} px wide with MSFT`);
      });

      await t.step("every symbol has a sparkline of the last minutes, bounded", async () => {
        const sparks = await waitFor(page, "a sparkline on every row", () => {
          const svgs = [...document.querySelectorAll("#watchlist tr svg.spark")];
          const counts = svgs.map((svg) => Number(svg.dataset.points));
          return svgs.length === 5 && counts.every((n) => n >= 2) ? counts : null;
        }, { timeout: 15_000 });
        assert.ok(sparks!.every((n) => n <= 60), `at most 60 points: ${sparks}`);
        const head = await page.evaluate(() =>
          [...document.querySelectorAll("#watchlist-table th")].map((th) => th.textContent)
        );
        assert.deepEqual(head, ["Symbol", "5m", "Last", "Chg %", "T/s"]);
      });

      await t.step("sorting by a header, by the picker, and remembered", async () => {
        // Each header's order, read in the moment of the click with the cells shown.
        const change = await sortBy(page, { head: "change" });
        assertSorted(change, "change desc");
        for (const row of change.rows) assert.equal(row.change, formatPct(Number(row.value)));
        assertSorted(await sortBy(page, { head: "change" }), "change asc");
        const tps = await sortBy(page, { head: "tps" });
        assertSorted(tps, "tps desc");
        for (const row of tps.rows) assert.equal(row.tps, formatRate(Number(row.value)));
        // Volume (the picker's only): the values sorted by are the server's volumes
        // of that moment, which only grow.
        const before = await volumes(dashboard.url);
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const volume = await sortBy(page, { picker: "volume" });
        const after = await volumes(dashboard.url);
        assertSorted(volume, "volume desc");
        for (const { symbol, value } of volume.rows) {
          assert.ok(before[symbol] <= Number(value) && Number(value) <= after[symbol], symbol);
        }
        const name = await sortBy(page, { head: "name" });
        assertSorted(name, "name asc");
        assert.deepEqual(name.rows.map((row) => row.symbol), [...SYMBOLS].sort());
        await page.click(`#watchlist-table th[data-sort="tps"]`);
        await page.reload();
        await waitFor(
          page,
          "the rows again",
          () => document.querySelectorAll("#watchlist tr").length === 5,
        );
        assert.equal(await tableSort(page), "tps desc", "the sort survives a reload");
        assert.equal(
          await page.evaluate(() => document.getElementById("watchlist-sort")!.value),
          "tps",
        );
        await page.click(`#watchlist-table th[data-sort="name"]`);
      });

      await t.step("keys: ↑/↓ move between symbols, 1–4 choose the window", async () => {
        const order = await rowOrder(page);
        const at = order.indexOf(await text(page, "quote-symbol"));
        await page.keyboard.press("ArrowDown");
        await waitFor(
          page,
          "the next symbol",
          (symbol) => document.getElementById("quote-symbol")!.textContent === symbol,
          {
            args: [order[at + 1]],
          },
        );
        await page.keyboard.press("ArrowUp");
        await waitFor(
          page,
          "back to the symbol",
          (symbol) => document.getElementById("quote-symbol")!.textContent === symbol,
          {
            args: [order[at]],
          },
        );
        // Two presses quicker than the choice opens (a held key) move two rows.
        const [key, back] = at + 2 < order.length
          ? ["ArrowDown", "ArrowUp"] as const
          : ["ArrowUp", "ArrowDown"] as const;
        for (
          const [press, symbol] of [[key, order[at + (key === "ArrowDown" ? 2 : -2)]], [
            back,
            order[at],
          ]] as const
        ) {
          await page.keyboard.press(press);
          await page.keyboard.press(press);
          await waitFor(
            page,
            `two rows on, at ${symbol}`,
            (symbol) => document.getElementById("quote-symbol")!.textContent === symbol,
            { args: [symbol] },
          );
        }
        for (const [key, window] of [["2", "5m"], ["4", "1h"], ["1", "1m"]]) {
          await page.keyboard.press(key as "1");
          await waitFor(
            page,
            `the ${window} window`,
            (window) =>
              document.querySelectorAll(
                  `#window-picker button[data-window="${window}"][aria-pressed="true"]`,
                ).length === 1 &&
              location.hash.includes(`window=${window}`),
            { args: [window] },
          );
        }
        // A key typed into a field is the field's.
        await page.focus("#watchlist-sort");
        await page.keyboard.press("3");
        assert.match(await page.evaluate(() => location.hash), /window=1m/);
        // ↑/↓ are the watchlist's only when it (or nothing: the page body) has focus;
        // on a button elsewhere they are the browser's.
        const symbol = await text(page, "quote-symbol");
        await page.focus("#compare-toggle");
        await page.keyboard.press("ArrowDown");
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal(
          await text(page, "quote-symbol"),
          symbol,
          "an arrow on a button moves nothing",
        );
        await page.evaluate(() => document.activeElement.blur());
        await page.keyboard.press("ArrowDown");
        await waitFor(
          page,
          "the next symbol from the page body",
          (symbol) => document.getElementById("quote-symbol")!.textContent !== symbol,
          { args: [symbol] },
        );
      });

      await t.step(
        "compare: several symbols as % change on one chart, no extra pushes",
        async () => {
          await page.click("#compare-toggle");
          const shown = await waitFor(page, "four symbols compared", () => {
            const chart = document.getElementById("compare-chart")!;
            const chips = [...document.querySelectorAll("#compare-chips .compare-chip")];
            return chart.dataset.series === "4" && Number(chart.dataset.points) >= 2 &&
                chips.length === 4
              ? chips.map((chip) => chip.textContent)
              : null;
          }, { timeout: 15_000 });
          for (const chip of shown!) assert.match(chip!, /SIM[+-]?\d+\.\d\d%×$/, chip!);
          assert.equal(
            await display(page, ".candle-card"),
            "none",
            "compare takes the candles' place",
          );
          assert.ok(
            (await page.evaluate(() => document.documentElement.scrollWidth)) <= PHONE.width,
            "no sideways scroll with compare on",
          );
          // Remove one, add another; the choice survives a reload.
          await page.click("#compare-chips .compare-chip:nth-child(2) button");
          await waitFor(
            page,
            "three lines",
            () => document.getElementById("compare-chart")!.dataset.series === "3",
          );
          const left = await chipSymbols(page);
          const extra = SYMBOLS.find((s) => !left.includes(s))!;
          await page.select("#compare-add", extra);
          await waitFor(
            page,
            "four lines again",
            () => document.getElementById("compare-chart")!.dataset.series === "4",
          );
          await page.reload();
          await waitFor(
            page,
            "compare after a reload",
            () => Number(document.getElementById("compare-chart")!.dataset.points) >= 2,
          );
          assert.deepEqual(await chipSymbols(page), [...left, extra]);
          // It redraws from the data the page has: about once a second, and the
          // stream stays at most 20 pushes a second.
          const draws = await page.evaluate(() =>
            new Promise<number>((resolve) => {
              const chart = document.getElementById("compare-chart")!;
              const first = Number(chart.dataset.draws);
              setTimeout(() => resolve(Number(chart.dataset.draws) - first), 3000);
            })
          );
          assert.ok(draws >= 2 && draws <= 4, `${draws} compare redraws in 3 s`);
          const pushes = Number(await text(page, "stat-pushes"));
          assert.ok(pushes > 0 && pushes <= 21, `${pushes} updates/s`);
        },
      );

      await t.step("screenshot: docs/phone.png", async () => {
        await page.click("#compare-toggle"); // back to the candles
        await waitFor(
          page,
          "a few seconds of MSFT",
          () => Number(document.getElementById("price-chart")!.dataset.points) >= 12,
          { timeout: 20_000 },
        );
        await page.evaluate(() =>
          (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0)
        );
        const png = await page.screenshot();
        assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
        if (SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);
      });

      await t.step(
        "compare on a desktop, the chosen symbols remembered: docs/compare.png",
        async () => {
          const desk = await browser.newPage();
          await desk.setViewport({ width: 1440, height: 900 });
          await desk.goto(`${dashboard.url}#symbol=AAPL&window=5m`);
          // The phone went back to the candles, and the browser remembers: compare again,
          // with the symbols chosen on the phone.
          await waitFor(desk, "the page", () => document.getElementById("compare-toggle") !== null);
          await desk.click("#compare-toggle");
          await waitFor(
            desk,
            "compare on the desktop",
            () =>
              document.getElementById("compare-chart")!.dataset.series === "4" &&
              Number(document.getElementById("compare-chart")!.dataset.points) >= 6,
            {
              timeout: 20_000,
            },
          );
          const width = await desk.evaluate(() =>
            // deno-lint-ignore no-explicit-any
            (document.getElementById("compare-chart") as any).getBoundingClientRect().width
          );
          assert.ok(width >= 700, `compare chart ${width} px wide`);
          const png = await desk.screenshot();
          if (COMPARE_SCREENSHOT) {
            await Deno.writeFile(COMPARE_SCREENSHOT, png);
          }
          await desk.click("#compare-toggle");
          assert.notEqual(await display(desk, ".candle-card"), "none", "the candles are back");
          await desk.close();
        },
      );

      const problems = log.console.filter((line) => /error|refused|uncaught|violat/i.test(line));
      assert.deepEqual(problems, [], "no console errors");
    });
    producer.kill("SIGTERM");
    assert.equal((await producer.done).code, 0);
    dashboard.kill("SIGTERM");
    assert.equal((await dashboard.done).code, 0);
  });
});
