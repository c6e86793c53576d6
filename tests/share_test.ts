/**
 * A dashboard you can share: the token gate (lib/auth.ts) in front of the real
 * server, in process (the API, the event stream, the one-time link and its cookie,
 * the rate limit, nothing secret in the log), the settings' rules (config.ts), and
 * the one-line refusals of the scripts as their tasks run them. The shared dashboard
 * over HTTPS in Chromium, fed by the real pipeline: shared_pipeline_test.ts.
 */

import assert from "node:assert/strict";
import { Aggregator } from "../consumer/candles.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { Gate, SESSION_COOKIE, SESSION_MAX_AGE_S } from "../lib/auth.ts";
import { serveMetrics, single } from "../lib/metrics.ts";
import { withDashboard } from "./helpers/dashboard.ts";
import { scriptArgs } from "../tools/scripts.ts";
import { BROKERS } from "./helpers/kafka.ts";
import { Proc } from "./helpers/processes.ts";
import { EventReader } from "./helpers/sse.ts";

const TOKEN = "share-test-token-4f1c9a0e7b";

/** console.error's lines while `body` runs (the dashboard logs refused logins there). */
async function capturingErrors<T>(body: (lines: string[]) => Promise<T>): Promise<T> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return await body(lines);
  } finally {
    console.error = original;
  }
}

Deno.test("a token-protected dashboard: 401 without, 200 with Bearer, a one-time link for a cookie, 429 after failures", async (t) => {
  const aggregator = new Aggregator({ intervalsMs: [1000], maxCandles: 60, maxSymbols: 10 });
  aggregator.apply({ symbol: "AAPL", price: 190, volume: 1, time: Date.now(), source: "sim" });
  await capturingErrors((log) =>
    withDashboard(aggregator, { token: TOKEN, maxLoginFailures: 3 }, async (dashboard) => {
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(new URL(path, dashboard.url), { headers, redirect: "manual" });
      const bearer = { authorization: `Bearer ${TOKEN}` };
      await t.step(
        "without the token: 401 everywhere but /healthz, which says only ok",
        async () => {
          for (
            const path of [
              "/",
              "/app.js",
              "/api/symbols",
              "/api/candles?symbol=AAPL",
              "/api/feed",
              "/events",
              "/metrics",
            ]
          ) {
            const response = await get(path);
            assert.equal(response.status, 401, path);
            assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer/, path);
            assert.match(await response.text(), /\?token=<token>.*Authorization: Bearer/, path);
          }
          const health = await get("/healthz");
          assert.equal(health.status, 200);
          assert.deepEqual(await health.json(), { ok: true });
        },
      );

      await t.step("with Authorization: Bearer: the API, the stream and the metrics", async () => {
        const symbols = await get("/api/symbols", bearer);
        assert.equal(symbols.status, 200);
        assert.equal((await symbols.json()).symbols[0].symbol, "AAPL");
        const stream = new EventReader(await get("/events?symbol=AAPL", bearer));
        assert.equal((await stream.next()).event, "snapshot");
        await stream.cancel();
        const metrics = await get("/metrics", bearer);
        assert.equal(metrics.status, 200);
        assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
        assert.match(await metrics.text(), /^market_stream_dashboard_sse_streams_opened_total 1$/m);
        const health = await (await get("/healthz", bearer)).json();
        assert.deepEqual(health, { ok: true }, "/healthz stays short for everyone");
      });

      let cookie = "";
      await t.step("the one-time link: a cookie and a redirect without the token", async () => {
        const login = await get(`/?symbol=AAPL&token=${TOKEN}&window=5m`);
        assert.equal(login.status, 303);
        assert.equal(login.headers.get("location"), "/?symbol=AAPL&window=5m");
        assert.equal(login.headers.get("cache-control"), "no-store");
        await login.body?.cancel();
        const setCookie = login.headers.get("set-cookie") ?? "";
        assert.match(setCookie, new RegExp(`^${SESSION_COOKIE}=\\d+\\.[\\w-]{43}; Path=/;`));
        assert.match(setCookie, /; HttpOnly; SameSite=Lax$/, "no Secure over plain HTTP");
        assert.ok(!setCookie.includes(TOKEN), "the cookie is not the token");
        cookie = setCookie.split(";")[0];
        const page = await get("/", { cookie });
        assert.equal(page.status, 200);
        assert.match(await page.text(), /<html/i);
        const stream = new EventReader(await get("/events?symbol=AAPL", { cookie }));
        assert.equal((await stream.next()).data.symbol, "AAPL");
        await stream.cancel();
        const stale = await get("/api/symbols", { cookie: `${SESSION_COOKIE}=forged` });
        assert.equal(stale.status, 401);
        await stale.body?.cancel();
      });

      await t.step(
        "failed logins: 401, then 429 with Retry-After; the right token still passes",
        async () => {
          const attempts: [string, Record<string, string>][] = [
            ["/api/symbols", { authorization: "Bearer nope" }],
            ["/?token=guess", {}],
            ["/api/symbols", { authorization: "Basic x" }],
          ];
          for (const [path, headers] of attempts) {
            const response = await get(path, headers);
            assert.equal(response.status, 401, path);
            await response.body?.cancel();
          }
          for (const [path, headers] of attempts) {
            const locked = await get(path, headers);
            assert.equal(locked.status, 429, path);
            assert.ok(Number(locked.headers.get("retry-after")) > 50);
            await locked.body?.cancel();
          }
          // A guesser behind the same proxy or NAT does not lock the users out.
          for (const headers of [bearer, { cookie }]) {
            const allowed = await get("/api/symbols", headers);
            assert.equal(allowed.status, 200);
            await allowed.body?.cancel();
          }
          assert.equal(log.length, 3, log.join("\n"));
          assert.match(
            log[0],
            /^dashboard: refused a login from 127\.0\.0\.1: a wrong Authorization/,
          );
          assert.match(log[1], /a wrong \?token= link \(2 in 60 s\)$/);
          assert.match(log[2], /\(3 in 60 s\); answering 429 to it for 60 s$/);
          assert.ok(!log.join("\n").includes("guess") && !log.join("\n").includes(TOKEN));
        },
      );
    })
  );
});

Deno.test("failed logins are counted per address in a bounded table", () => {
  const lines: string[] = [];
  const gate = new Gate({
    token: TOKEN,
    secure: true,
    page: true,
    log: (line) => lines.push(line),
    maxFailures: 2,
    windowMs: 60_000,
    maxClients: 100,
  });
  const url = new URL("https://dash.example/api/symbols");
  const wrong = new Request(url, { headers: { authorization: "Bearer wrong" } });
  const right = new Request(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const at = 1_000_000;
  const status = (verdict: ReturnType<Gate["check"]>) =>
    verdict.kind === "denied" ? verdict.status : verdict.kind;
  gate.check(wrong, url, "10.0.0.1", at);
  gate.check(wrong, url, "10.0.0.1", at);
  assert.equal(status(gate.check(wrong, url, "10.0.0.1", at)), 429, "locked");
  assert.equal(status(gate.check(right, url, "10.0.0.1", at)), "pass", "the token still passes");
  assert.equal(status(gate.check(wrong, url, "10.0.0.2", at)), 401, "another address: not locked");
  assert.equal(status(gate.check(wrong, url, "10.0.0.1", at + 60_000)), 401, "the window ends");
  // Locked again, then 200 other addresses fail once: the table keeps 100, oldest out.
  gate.check(wrong, url, "10.0.0.1", at + 60_000);
  assert.equal(status(gate.check(wrong, url, "10.0.0.1", at + 60_001)), 429);
  for (let i = 0; i < 200; i++) gate.check(wrong, url, `192.0.2.${i}`, at + 60_002);
  assert.equal(status(gate.check(wrong, url, "10.0.0.1", at + 60_003)), 401, "forgotten");
  assert.equal(gate.refused, 206);
  // Over HTTPS the cookie is Secure too.
  const login = gate.check(
    new Request(`${url}?token=${TOKEN}`),
    new URL(`${url}?token=${TOKEN}`),
    "10.0.0.3",
  );
  assert.ok(login.kind === "login" && login.cookie.endsWith("; HttpOnly; SameSite=Lax; Secure"));
  assert.ok(lines.every((line) => !line.includes(TOKEN)));
});

Deno.test("a session cookie: the server ends it after a week, and a forged date or token does not pass", () => {
  const gate = (token: string) => new Gate({ token, secure: false, page: true, log: () => {} });
  const url = new URL("http://dash.example/");
  const issuedAt = 1_800_000_000_000;
  const login = gate(TOKEN).check(
    new Request(`${url}?token=${TOKEN}`),
    new URL(`${url}?token=${TOKEN}`),
    "10.0.0.1",
    issuedAt,
  );
  assert.ok(login.kind === "login");
  const value = login.cookie.split(";")[0].split("=")[1];
  const kind = (cookie: string, now: number, token = TOKEN) =>
    gate(token).check(
      new Request(url, { headers: { cookie: `${SESSION_COOKIE}=${cookie}` } }),
      url,
      "10.0.0.1",
      now,
    ).kind;
  const week = SESSION_MAX_AGE_S * 1000;
  assert.equal(kind(value, issuedAt), "pass");
  assert.equal(kind(value, issuedAt + week), "pass", "a week to the second");
  assert.equal(kind(value, issuedAt + week + 1000), "denied", "expired on the server's clock");
  assert.equal(kind(value, issuedAt - 30_000), "pass", "a clock stepped back a little");
  assert.equal(kind(value, issuedAt - 120_000), "denied", "issued in the future");
  const [issued, mac] = value.split(".");
  assert.equal(
    kind(`${Number(issued) + 3600}.${mac}`, issuedAt + week + 1000),
    "denied",
    "a forged date",
  );
  assert.equal(kind(value, issuedAt, "another-token-0123456789"), "denied", "the token changed");
  assert.equal(kind(mac, issuedAt), "denied", "no date");
});

Deno.test("settings: a token beyond loopback, never a short one; cert and key together", () => {
  const refused = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    assert.fail(`${JSON.stringify(env)} was accepted`);
  };
  assert.equal(loadConfig({}).dashboardToken, undefined, "loopback: no token, as before");
  assert.equal(
    loadConfig({ DASHBOARD_HOST: "0.0.0.0", DASHBOARD_TOKEN: TOKEN }).dashboardToken,
    TOKEN,
  );
  assert.match(
    refused({ DASHBOARD_HOST: "0.0.0.0" }),
    /^DASHBOARD_TOKEN: is needed when DASHBOARD_HOST=0\.0\.0\.0 .*\(example: DASHBOARD_TOKEN=\$\(openssl rand -hex 24\)\)$/,
  );
  assert.match(
    refused({ DASHBOARD_TOKEN: "short" }),
    /^DASHBOARD_TOKEN: is 5 characters, too easy to guess: use at least 16/,
  );
  assert.match(
    refused({ DASHBOARD_CERT: "certs/cert.pem" }),
    /^DASHBOARD_KEY: is needed with DASHBOARD_CERT/,
  );
  assert.equal(loadConfig({}).producerMetrics, undefined, "the producer's metrics: off by default");
  assert.deepEqual(loadConfig({ PRODUCER_METRICS_PORT: "9464" }).producerMetrics, {
    host: "127.0.0.1",
    port: 9464,
    token: undefined,
  });
  assert.match(
    refused({ PRODUCER_METRICS_PORT: "9464", PRODUCER_METRICS_HOST: "0.0.0.0" }),
    /^PRODUCER_METRICS_TOKEN: is needed/,
  );
  assert.match(
    refused({ PRODUCER_METRICS_PORT: "http" }),
    /^PRODUCER_METRICS_PORT: "http" is not a whole number/,
  );
});

Deno.test("the dashboard beyond loopback: each mistake is one line and exit 2, before Kafka", async () => {
  const cases: [string, "dashboard" | "dashboard-shared", Record<string, string>, RegExp][] = [
    [
      "no token",
      "dashboard-shared",
      { DASHBOARD_HOST: "0.0.0.0" },
      /^error: DASHBOARD_TOKEN: is needed when DASHBOARD_HOST=0\.0\.0\.0/,
    ],
    [
      "a weak token",
      "dashboard-shared",
      { DASHBOARD_HOST: "0.0.0.0", DASHBOARD_TOKEN: "abc123" },
      /^error: DASHBOARD_TOKEN: is 6 characters/,
    ],
    [
      "the loopback task",
      "dashboard",
      { DASHBOARD_HOST: "0.0.0.0", DASHBOARD_TOKEN: TOKEN },
      /^error: DASHBOARD_HOST: this task may not listen on 0\.0\.0\.0: `deno task dashboard` listens on loopback, `deno task dashboard:shared` on every interface/,
    ],
    [
      "a certificate outside certs/",
      "dashboard-shared",
      {
        DASHBOARD_HOST: "0.0.0.0",
        DASHBOARD_TOKEN: TOKEN,
        DASHBOARD_CERT: "/etc/hostname",
        DASHBOARD_KEY: "/etc/hostname",
      },
      /^error: DASHBOARD_CERT: this task may not read "\/etc\/hostname": put it in certs\//,
    ],
    ["a missing certificate", "dashboard-shared", {
      DASHBOARD_HOST: "0.0.0.0",
      DASHBOARD_TOKEN: TOKEN,
      DASHBOARD_CERT: "certs/none.pem",
      DASHBOARD_KEY: "certs/none.key",
    }, /^error: DASHBOARD_CERT: "certs\/none\.pem": no such file/],
  ];
  await Promise.all(cases.map(async ([what, script, env, pattern]) => {
    await using proc = new Proc([...scriptArgs(script)], {
      KAFKA_BROKERS: BROKERS,
      DASHBOARD_PORT: "0",
      ...env,
    });
    const { code, stdout, stderr } = await proc.done;
    assert.equal(code, 2, `${what}: ${stderr}`);
    assert.equal(stdout, "", what);
    assert.equal(stderr.trimEnd().split("\n").length, 1, `${what}: one line: ${stderr}`);
    assert.match(stderr, pattern, what);
    assert.ok(!stderr.includes(TOKEN), what);
  }));
});

Deno.test("the producer's metrics server: Bearer beyond loopback, one line for a taken port", async () => {
  const lines: string[] = [];
  const server = serveMetrics({
    hostname: "127.0.0.1",
    port: 0,
    token: TOKEN,
    log: (line) => lines.push(line),
    collect: () => [single("counter", "market_stream_test_total", "A \\ test\nline.", 3)],
  }, "PRODUCER_METRICS_PORT");
  try {
    const denied = await fetch(server.url, { headers: { authorization: "Bearer wrong" } });
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const link = await fetch(`${server.url}?token=${TOKEN}`);
    assert.equal(link.status, 401, "no ?token= link on a metrics endpoint");
    await link.body?.cancel();
    const scrape = await fetch(server.url, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(
      await scrape.text(),
      "# HELP market_stream_test_total A \\\\ test\\nline.\n" +
        "# TYPE market_stream_test_total counter\nmarket_stream_test_total 3\n",
    );
    assert.deepEqual(lines, [
      "refused a login from 127.0.0.1: a wrong Authorization: Bearer token (1 in 60 s)",
    ]);
    const port = Number(new URL(server.url).port);
    assert.throws(
      () =>
        serveMetrics(
          { hostname: "127.0.0.1", port, log: () => {}, collect: () => [] },
          "PRODUCER_METRICS_PORT",
        ),
      {
        name: "UsageError",
        message:
          `PRODUCER_METRICS_PORT: 127.0.0.1:${port} is in use: set PRODUCER_METRICS_PORT to another port`,
      },
    );
  } finally {
    await server[Symbol.asyncDispose]();
  }
});
