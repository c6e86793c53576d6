/**
 * The shared dashboard and the metrics, end to end: the fake Finnhub server feeds
 * the producer (its /metrics on PRODUCER_METRICS_PORT), the real broker carries the
 * trades, and `deno task dashboard:shared` serves them on 0.0.0.0 over HTTPS (a
 * throwaway self-signed certificate made with openssl in certs/) behind a token.
 * Chromium opens the one-time link; `promtool check metrics` reads both endpoints,
 * and their counters are held to what Kafka holds.
 */

import assert from "node:assert/strict";
import { ROOT, scriptArgs } from "../tools/scripts.ts";
import { type PageDocument, recordPage, withBrowser } from "./helpers/browser.ts";
import { FakeFinnhub } from "./helpers/fake_finnhub.ts";
import { BROKERS, uniqueName, withTopic } from "./helpers/kafka.ts";
import { Proc, recordCount, startProducer, waitForCount, waitUntil } from "./helpers/processes.ts";
import { EventReader } from "./helpers/sse.ts";

declare const document: PageDocument;

const SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT"];
const TOKEN = "e2e-share-token-9d41c07b2a55";

/** A self-signed certificate for 127.0.0.1 and localhost, in certs/ where the task may read it. */
async function throwawayCertificate(): Promise<{ dir: string; cert: string }> {
  const dir = `certs/test-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(`${ROOT}${dir}`, { recursive: true });
  const { code, stderr } = await new Deno.Command("openssl", {
    args: [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost"],
      ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      // A server certificate, not a CA (rustls refuses a CA as the server's own).
      ...["-addext", "basicConstraints=critical,CA:FALSE"],
      ...["-addext", "extendedKeyUsage=serverAuth"],
    ],
    cwd: `${ROOT}${dir}`,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return { dir, cert: await Deno.readTextFile(`${ROOT}${dir}/cert.pem`) };
}

/** `promtool check metrics` on a scrape: its complaints, "" when there are none. */
async function promtool(text: string): Promise<string> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const said = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return code === 0 ? said.trim() : `exit ${code}: ${said}`;
}

/** A scrape as `name{labels}` -> value (HELP and TYPE lines skipped). */
function samples(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) values.set(match[1], Number(match[2]));
  }
  return values;
}

Deno.test("shared over HTTPS with a token, metrics at both ends, from the real pipeline", async (t) => {
  const fake = new FakeFinnhub();
  fake.pingEvery(500);
  const { dir, cert } = await throwawayCertificate();
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      await using producer = startProducer(
        [`--topic=${topic}`, `--symbols=${SYMBOLS.join(",")}`, "--status-interval=0"],
        {
          KAFKA_BROKERS: BROKERS,
          FINNHUB_TOKEN: fake.token,
          FINNHUB_WS_URL: fake.url,
          PRODUCER_METRICS_PORT: "0",
        },
      );
      const [, producerMetrics] = await producer.waitFor(/metrics: (http:\/\/\S+)/);
      await using dashboard = new Proc(scriptArgs("dashboard-shared"), {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("share-test"),
        DASHBOARD_HOST: "0.0.0.0",
        DASHBOARD_PORT: "0",
        DASHBOARD_TOKEN: TOKEN,
        DASHBOARD_CERT: `${dir}/cert.pem`,
        DASHBOARD_KEY: `${dir}/key.pem`,
      });
      const [, url] = await dashboard.waitFor(/dashboard: (https:\/\/\S+)/);
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(new URL(path, url), { client, headers });
      const bearer = { authorization: `Bearer ${TOKEN}` };
      const scrape = async (where: string, headers: Record<string, string> = {}) => {
        const response = await fetch(where, { client, headers });
        assert.equal(response.status, 200, where);
        const text = await response.text();
        assert.equal(await promtool(text), "", `promtool on ${where}`);
        return samples(text);
      };

      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      fake.sendUnique(SYMBOLS, 300);
      fake.sendRaw("{not json");
      await waitForCount(admin, topic, () => 300);

      await t.step(
        "over HTTPS: 401 without the token, 200 with Bearer, on the API and /events",
        async () => {
          for (const path of ["/api/symbols", "/events", "/metrics", "/"]) {
            const response = await get(path);
            assert.equal(response.status, 401, path);
            await response.body?.cancel();
          }
          const symbols = await get("/api/symbols", bearer);
          assert.equal(symbols.status, 200);
          assert.equal((await symbols.json()).symbols.length, SYMBOLS.length);
          const stream = new EventReader(await get("/events?symbol=AAPL", bearer));
          assert.equal((await stream.next()).event, "snapshot");
          await stream.cancel();
        },
      );

      await t.step("the container's health check speaks HTTPS to it", async () => {
        const check = (env: Record<string, string>) =>
          new Deno.Command("deno", {
            args: ["run", "-q", "--no-prompt", "-P=healthcheck", "tools/healthcheck.ts"],
            cwd: ROOT,
            env: { DASHBOARD_PORT: new URL(url).port, ...env },
            stdout: "piped",
            stderr: "piped",
          }).output();
        const healthy = await check({ DASHBOARD_CERT: `${dir}/cert.pem` });
        assert.equal(healthy.code, 0, new TextDecoder().decode(healthy.stderr));
        const plain = await check({});
        assert.equal(plain.code, 1, "plain HTTP to an HTTPS dashboard is no answer");
        assert.match(
          new TextDecoder().decode(plain.stderr),
          /^unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: .+\n$/,
        );
      });

      await t.step(
        "the producer's /metrics: promtool passes, acknowledged = what Kafka holds",
        async () => {
          let metrics = new Map<string, number>();
          await waitUntil("the producer's acknowledged count to reach 300", async () => {
            metrics = await scrape(producerMetrics);
            return metrics.get("market_stream_producer_trades_acknowledged_total") === 300;
          });
          assert.equal(await recordCount(admin, topic), 300);
          assert.equal(metrics.get("market_stream_producer_trades_received_total"), 300);
          assert.equal(metrics.get('market_stream_producer_rejected_total{kind="not-json"}'), 1);
          assert.equal(metrics.get("market_stream_producer_queue_trades"), 0);
          assert.equal(metrics.get("market_stream_producer_reconnects_total"), 0);
        },
      );

      await t.step(
        "Chromium: the one-time link becomes a cookie, the live page works",
        async () => {
          await withBrowser(
            { width: 1200, height: 800, acceptInsecureCerts: true },
            async (browser) => {
              const page = await browser.newPage();
              const log = recordPage(page);
              await page.goto(`${url}?token=${TOKEN}#symbol=AAPL&window=5m`);
              await page.waitForFunction(
                () => document.getElementById("connection-text")?.textContent === "live",
                { polling: 100, timeout: 15_000 },
              );
              assert.ok(
                !page.url().includes(TOKEN),
                `the token left the address bar: ${page.url()}`,
              );
              assert.ok(page.url().endsWith("#symbol=AAPL&window=5m"), page.url());
              const cookies = await browser.cookies();
              const session = cookies.find((cookie) => cookie.name === "market_stream_session");
              assert.ok(session?.httpOnly && session.secure && session.sameSite === "Lax");
              const readable = await page.evaluate(() =>
                (globalThis as unknown as { document: { cookie: string } }).document.cookie
              );
              assert.ok(
                !readable.includes("market_stream_session"),
                "HttpOnly: scripts cannot read it",
              );
              // "live" comes with the stream's opening; the chart draws on the next frame.
              await page.waitForFunction(
                () => Number(document.getElementById("price-chart")!.dataset.points) > 0,
                { polling: 100, timeout: 15_000 },
              );
              const streams = await scrape(new URL("/metrics", url).href, bearer);
              assert.equal(streams.get("market_stream_dashboard_sse_streams"), 1);
              // Live: more trades arrive and the stats panel counts them.
              fake.sendUnique(SYMBOLS, 300);
              await page.waitForFunction(
                () => document.getElementById("stat-applied")?.textContent === "600",
                { polling: 100, timeout: 15_000 },
              );
              const problems = log.console.filter((line) =>
                /error|refused|uncaught|violat/i.test(line)
              );
              assert.deepEqual(problems, [], "no console errors");

              // A link in a chat or a mail is a navigation from another site (here
              // http://localhost): the Lax cookie comes with it, and the page opens live.
              const chat = Deno.serve(
                { hostname: "127.0.0.1", port: 0, onListen: () => {} },
                () =>
                  new Response(`<a id="go" href="${url}#symbol=MSFT">the dashboard</a>`, {
                    headers: { "content-type": "text/html" },
                  }),
              );
              try {
                await page.goto(`http://localhost:${chat.addr.port}/`);
                await Promise.all([page.waitForNavigation(), page.click("#go")]);
                await page.waitForFunction(
                  () => document.getElementById("connection-text")?.textContent === "live",
                  { polling: 100, timeout: 15_000 },
                );
                assert.ok(page.url().endsWith("#symbol=MSFT"), page.url());
              } finally {
                await chat.shutdown();
              }
            },
          );
        },
      );

      await t.step(
        "the dashboard's /metrics: promtool passes, counters follow the trades",
        async () => {
          let metrics = new Map<string, number>();
          await waitUntil("lag 0 on every partition", async () => {
            metrics = await scrape(new URL("/metrics", url).href, bearer);
            return [0, 1, 2].every((p) =>
              metrics.get(`market_stream_consumer_lag_records{partition="${p}"}`) === 0
            );
          });
          assert.equal(await recordCount(admin, topic), 600);
          assert.equal(metrics.get("market_stream_consumer_records_applied_total"), 600);
          assert.equal(metrics.get("market_stream_consumer_latency_seconds_count"), 600);
          assert.equal(
            metrics.get('market_stream_consumer_latency_seconds_bucket{le="+Inf"}'),
            600,
          );
          assert.ok(metrics.get("market_stream_consumer_latency_seconds_sum")! > 0);
          assert.equal(metrics.get("market_stream_consumer_connected"), 1);
          assert.ok(metrics.get("market_stream_dashboard_sse_pushes_total")! > 0);
          assert.ok(metrics.get("market_stream_dashboard_sse_streams_opened_total")! >= 2);
          assert.equal(metrics.get("market_stream_dashboard_logins_refused_total"), 0);
        },
      );

      producer.kill("SIGTERM");
      dashboard.kill("SIGTERM");
      const [produced, served] = await Promise.all([producer.done, dashboard.done]);
      assert.equal(produced.code, 0, produced.stderr);
      assert.equal(served.code, 0, served.stderr);
      for (const output of [produced, served]) {
        const all = output.stdout + output.stderr;
        assert.ok(!all.includes(TOKEN) && !all.includes(fake.token), "no token in any output");
      }
    });
  } finally {
    client.close();
    await fake.close();
    await Deno.remove(`${ROOT}${dir}`, { recursive: true });
  }
});
