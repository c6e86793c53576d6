/**
 * The dashboard's JSON API and files against the real Aggregator: answers and clear
 * errors, the candle CSV export behind the token, and the safety rules (escaped
 * symbols, no markup from data, the CSP, one line for a port in use). The event
 * stream: dashboard_test.ts.
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { serveDashboard } from "../dashboard/server.ts";
import { CANDLE_CSV_HEADER, formatCandleCsv } from "../lib/format.js";
import {
  consumerStatus,
  events,
  expected,
  newAggregator,
  T0,
  trade,
  withDashboard,
  XSS,
} from "./helpers/dashboard.ts";
import { EventReader, type Row } from "./helpers/sse.ts";

Deno.test("the JSON API answers with the aggregator's data and clear errors", async (t) => {
  const aggregator = newAggregator();
  for (let i = 0; i < 90; i++) aggregator.apply(trade("AAPL", 100 + i, 2, T0 + i * 1000));
  aggregator.apply(trade("BINANCE:BTCUSDT", 67_000, 0.5, T0));
  let connected = true;
  await withDashboard(
    aggregator,
    { status: () => consumerStatus({ connected }) },
    async (dashboard) => {
      const get = (path: string, init?: RequestInit) => fetch(new URL(path, dashboard.url), init);

      await t.step("/api/symbols", async () => {
        const response = await get("/api/symbols");
        assert.match(response.headers.get("content-type")!, /^application\/json/);
        const body = await response.json();
        assert.deepEqual(body.intervals, [1000, 60_000]);
        assert.deepEqual(body.symbols.map((s: { symbol: string }) => s.symbol), [
          "AAPL",
          "BINANCE:BTCUSDT",
        ]);
        assert.equal(body.symbols[0].last, 189);
        assert.equal(body.symbols[0].source, "sim");
      });

      await t.step("/api/candles", async () => {
        const all = await (await get("/api/candles?symbol=AAPL&interval=1000")).json();
        assert.equal(all.candles.length, 90);
        // Rows, in the order /events sends them too.
        assert.equal(all.fields.join(), "time,open,high,low,close,volume,vwap,trades");
        assert.deepEqual(all.candles[0], [T0, 100, 100, 100, 100, 2, 100, 1]);
        assert.deepEqual(all.candles, expected(aggregator, "AAPL"));
        const from = await (await get(`/api/candles?symbol=AAPL&interval=1m&from=${T0 + 60_000}`))
          .json();
        assert.equal(from.interval, 60_000);
        assert.deepEqual(from.candles.map((row: Row) => row[0]), [T0 + 60_000]);
        const iso = await (await get(
          `/api/candles?symbol=AAPL&from=${new Date(T0 + 80_000).toISOString()}`,
        )).json();
        assert.equal(iso.candles.length, 10);
        const symbol = encodeURIComponent("BINANCE:BTCUSDT");
        const btc = await (await get(`/api/candles?symbol=${symbol}`)).json();
        assert.equal(btc.candles[0][4], 67_000, "close");
      });

      await t.step("errors name the parameter", async () => {
        for (
          const [path, status, pattern] of [
            [
              "/api/candles?symbol=AAPL&interval=7s",
              400,
              /interval: "7s" is not one of 1000, 60000/,
            ],
            ["/api/candles", 400, /symbol: missing/],
            ["/api/candles?symbol=AAPL&from=yesterday", 400, /from: "yesterday"/],
            ["/api/candles?symbol=TSLA", 404, /no trades seen for TSLA/],
            ["/events?window=3d", 400, /window: "3d"/],
          ] as const
        ) {
          const response = await get(path);
          assert.equal(response.status, status, path);
          assert.match((await response.json()).error, pattern);
        }
        const missing = await get("/nope");
        assert.equal(missing.status, 404);
        await missing.body?.cancel();
        const post = await get("/api/symbols", { method: "POST" });
        assert.equal(post.status, 405);
        await post.body?.cancel();
        // A page on another site, reaching 127.0.0.1 through a DNS name it controls.
        const { port } = new URL(dashboard.url);
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
        await conn.write(
          new TextEncoder().encode(
            "GET /api/symbols HTTP/1.1\r\nhost: evil.example:8080\r\nconnection: close\r\n\r\n",
          ),
        );
        const answer = new TextDecoder().decode(await new Response(conn.readable).bytes());
        assert.match(answer, /^HTTP\/1\.1 421 /, "a DNS-rebound name is refused");
        assert.ok(!answer.includes("AAPL"));
      });

      await t.step("/healthz follows the consumer's connection", async () => {
        const up = await get("/healthz");
        assert.equal(up.status, 200);
        const body = await up.json();
        assert.equal(body.ok, true);
        assert.equal(body.dashboard.streams, 0);
        connected = false;
        const down = await get("/healthz");
        assert.equal(down.status, 503);
        assert.equal((await down.json()).consumer.connected, false);
      });
    },
  );
});

Deno.test("symbols reach the page as text: escaped JSON, no markup in HTML, no innerHTML", async () => {
  const aggregator = newAggregator();
  aggregator.apply(trade(XSS, 1, 1, T0));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const raw = await (await fetch(new URL("/api/symbols", dashboard.url))).text();
    assert.ok(!raw.includes("<"), raw);
    assert.equal(JSON.parse(raw).symbols[0].symbol, XSS);

    const reader = new EventReader(await events(dashboard, `symbol=${encodeURIComponent(XSS)}`));
    const snapshot = await reader.next();
    assert.ok(!snapshot.raw.includes("<"), snapshot.raw);
    assert.equal(snapshot.data.symbol, XSS);
    assert.equal(snapshot.data.candles.length, 1);
    await reader.cancel();

    const page = await (await fetch(dashboard.url)).text();
    assert.ok(!page.includes("onerror"));
    // The page's own code never turns text into markup.
    for (
      const file of [
        "app.js",
        "charts.js",
        "format.js",
        "gaps.js",
        "indicators.js",
        "calendar.js",
        "panels.js",
        "studies.js",
      ]
    ) {
      const code = await (await fetch(new URL(file, dashboard.url))).text();
      assert.ok(code.length > 1000, file);
      assert.ok(!/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(code), file);
    }
  });
});

Deno.test("every response carries the CSP; the page has no inline script or style", async () => {
  const aggregator = newAggregator();
  aggregator.apply(trade("AAPL", 1, 1, T0));
  await withDashboard(aggregator, {}, async (dashboard) => {
    const page = await fetch(dashboard.url);
    await page.body?.cancel();
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.ok(!csp.includes("unsafe"), csp);
    const paths = [
      "/",
      "/app.js",
      "/charts.js",
      "/format.js",
      "/indicators.js",
      "/calendar.js",
      "/panels.js",
      "/studies.js",
      "/style.css",
      "/watchlist.css",
      "/charts.css",
      "/panels.css",
      "/phone.css",
      "/vendor/uPlot.esm.js",
      "/vendor/uPlot.min.css",
      "/api/symbols",
      "/api/candles?symbol=AAPL",
      "/healthz",
      "/nope",
    ];
    for (const path of paths) {
      const response = await fetch(new URL(path, dashboard.url));
      assert.equal(response.headers.get("content-security-policy"), csp, path);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff", path);
      await response.body?.cancel();
    }
    const html = await (await fetch(dashboard.url)).text();
    assert.ok(!/<script(?![^>]*\bsrc=)/i.test(html), "no inline script");
    assert.ok(!/\son[a-z]+=/i.test(html), "no inline event handler");
    assert.ok(!/\sstyle=/i.test(html), "no inline style");
    // Every stylesheet the page links is served as CSS (a file left out would be a 404).
    const sheets = [...html.matchAll(/<link rel="stylesheet" href="([^"]+)">/g)].map((m) => m[1]);
    assert.ok(sheets.length >= 5, `${sheets}`);
    for (const href of sheets) {
      const sheet = await fetch(new URL(href, dashboard.url));
      assert.equal(sheet.status, 200, href);
      assert.match(sheet.headers.get("content-type")!, /^text\/css/, href);
      await sheet.body?.cancel();
    }
    // uPlot is the npm package's own file, served without a CDN.
    const uplot = await fetch(new URL("/vendor/uPlot.esm.js", dashboard.url));
    assert.match(uplot.headers.get("content-type")!, /^text\/javascript/);
    const served = await uplot.text();
    const file = await Deno.readTextFile(
      new URL("../node_modules/uplot/dist/uPlot.esm.js", import.meta.url),
    );
    assert.equal(served, file);
  });
});

Deno.test("a port in use is one clear error, and nothing is left running", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(
      () =>
        serveDashboard({
          hostname: "127.0.0.1",
          port: listener.addr.port,
          signal: new AbortController().signal,
          aggregator: newAggregator(),
          status: () => consumerStatus(),
        }),
      new RegExp(
        `^UsageError: DASHBOARD_PORT: 127\\.0\\.0\\.1:${listener.addr.port} is in use: set ` +
          "DASHBOARD_PORT to another port$",
      ),
    );
  } finally {
    listener.close();
  }
});

Deno.test("candle CSV: the header, ISO times, numbers only, a download, behind the token", async () => {
  const token = "csv-test-token-0123456789";
  const aggregator = new Aggregator({
    intervalsMs: [1000, 60_000],
    maxCandles: 600,
    maxSymbols: 10,
  });
  const t0 = Date.UTC(2026, 0, 5, 14, 30);
  for (let i = 0; i < 5; i++) {
    aggregator.apply({
      symbol: "AAPL",
      price: 190 + i / 4,
      volume: 2,
      time: t0 + i * 1000,
      source: "sim",
    });
  }
  aggregator.apply({ symbol: "AAPL", price: 191.5, volume: 0, time: t0 + 5000, source: "sim" });
  await withDashboard(aggregator, { token }, async (dashboard) => {
    const get = (query: string, auth = true) =>
      fetch(new URL(`/api/candles?${query}`, dashboard.url), {
        headers: auth ? { authorization: `Bearer ${token}` } : {},
      });
    const refused = await get("symbol=AAPL&interval=1s&format=csv", false);
    assert.equal(refused.status, 401);
    await refused.body?.cancel();

    const response = await get("symbol=AAPL&interval=1s&format=csv");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/csv; charset=utf-8");
    assert.equal(
      response.headers.get("content-disposition"),
      'attachment; filename="AAPL_1s_2026-01-05T14-30-00-000Z.csv"',
    );
    const body = await response.text();
    const lines = body.split("\r\n");
    assert.equal(lines[0], "time,open,high,low,close,volume,vwap,trades");
    assert.equal(lines[0], CANDLE_CSV_HEADER);
    assert.equal(lines[1], "2026-01-05T14:30:00.000Z,190,190,190,190,2,190,1");
    assert.equal(lines[6], "2026-01-05T14:30:05.000Z,191.5,191.5,191.5,191.5,0,,1", "no VWAP");
    assert.equal(lines.length, 8, "six candles and the final line break");
    const json = await (await get("symbol=AAPL&interval=1s")).json();
    assert.equal(body, formatCandleCsv(json.candles), "the same rows as the JSON API");
    for (const line of lines.slice(1, -1)) assert.match(line, /^[0-9TZ:.\-]+(,[0-9.eE+\-]*){7}$/);

    const odd = await get("symbol=AAPL&format=xml");
    assert.equal(odd.status, 400);
    assert.match((await odd.json()).error, /^format: "xml" is not csv or json$/);
    const weird = await get(`symbol=${encodeURIComponent('=HYPERLINK("x")')}&format=csv`);
    assert.equal(weird.status, 404, "no trades for it: no file");
    await weird.body?.cancel();
  });
});
