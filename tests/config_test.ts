import assert from "node:assert/strict";
import { ConfigError, DEFAULTS, loadConfig } from "../config.ts";
import { parseDuration, parseTime } from "../lib/cli.ts";
import { redact } from "../lib/redact.ts";
import { requireFinnhubToken } from "../producer/flags.ts";

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error.message;
  }
  assert.fail(`expected ${JSON.stringify(env)} to be refused`);
}

Deno.test("defaults give a working local setup", () => {
  const config = loadConfig({});
  assert.deepEqual(config.brokers, ["127.0.0.1:9092"]);
  assert.equal(config.topic, DEFAULTS.KAFKA_TOPIC);
  assert.equal(config.partitions, 3);
  assert.equal(config.replicationFactor, 1);
  assert.equal(config.source, "sim", "no token means the simulated market");
  assert.equal(config.dashboardHost, "127.0.0.1");
  assert.equal(config.dashboardPort, 8080);
  assert.equal(config.sasl, undefined);
  assert.ok(
    Object.isFrozen(config) && Object.isFrozen(config.brokers) && Object.isFrozen(config.symbols),
  );
});

Deno.test("a token makes finnhub the default source; SOURCE overrides it", () => {
  assert.equal(loadConfig({ FINNHUB_TOKEN: "abc" }).source, "finnhub");
  assert.equal(loadConfig({ FINNHUB_TOKEN: "abc", SOURCE: "sim" }).source, "sim");
  assert.match(
    configError({ SOURCE: "bloomberg" }),
    /^SOURCE: "bloomberg" is not one of finnhub, sim, replay/,
  );
  assert.match(
    (() => {
      try {
        requireFinnhubToken(loadConfig({ SOURCE: "finnhub" }));
      } catch (error) {
        return (error as Error).message;
      }
      return "";
    })(),
    /^FINNHUB_TOKEN: is needed for the finnhub source/,
  );
});

Deno.test("KAFKA_BROKERS: lists of host:port, each checked", () => {
  assert.deepEqual(
    loadConfig({ KAFKA_BROKERS: " a.example:9092, 10.0.0.2:9094 ,[::1]:9096" }).brokers,
    ["a.example:9092", "10.0.0.2:9094", "[::1]:9096"],
  );
  assert.equal(
    configError({ KAFKA_BROKERS: "localhost:notaport" }),
    'KAFKA_BROKERS: "localhost:notaport" is not host:port (example: KAFKA_BROKERS=127.0.0.1:9092,127.0.0.1:9094)',
  );
  assert.match(configError({ KAFKA_BROKERS: "localhost:70000" }), /port 70000 is not in 1-65535/);
  assert.match(configError({ KAFKA_BROKERS: "localhost" }), /"localhost" is not host:port/);
  assert.match(configError({ KAFKA_BROKERS: " , " }), /KAFKA_BROKERS: is empty/);
});

Deno.test("KAFKA_TOPIC follows Kafka's naming rules", () => {
  assert.equal(loadConfig({ KAFKA_TOPIC: "market.trades_v1-x" }).topic, "market.trades_v1-x");
  assert.match(configError({ KAFKA_TOPIC: "trades!" }), /may use only letters, digits/);
  assert.match(configError({ KAFKA_TOPIC: ".." }), /is not a valid topic/);
  assert.match(configError({ KAFKA_TOPIC: "x".repeat(250) }), /1 to 249 characters/);
});

Deno.test("numbers are whole and in range", () => {
  assert.match(configError({ KAFKA_PARTITIONS: "0" }), /^KAFKA_PARTITIONS: 0 is not in 1-10000/);
  assert.match(configError({ KAFKA_PARTITIONS: "2.5" }), /is not a whole number/);
  assert.match(
    configError({ KAFKA_REPLICATION_FACTOR: "-1" }),
    /^KAFKA_REPLICATION_FACTOR: "-1" is not a whole number/,
  );
  assert.match(configError({ DASHBOARD_PORT: "http" }), /^DASHBOARD_PORT/);
});

Deno.test("SYMBOLS: Finnhub's shapes are accepted, mistakes are named", () => {
  assert.deepEqual(
    loadConfig({ SYMBOLS: "AAPL, BINANCE:BTCUSDT,OANDA:EUR_USD,IC MARKETS:1" }).symbols,
    ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1"],
  );
  assert.match(configError({ SYMBOLS: "AAPL,AAPL" }), /names a symbol twice/);
  assert.match(configError({ SYMBOLS: "AAPL,\u0007X" }), /control character/);
});

Deno.test("SASL and SSL for managed clusters", () => {
  const config = loadConfig({
    KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
    KAFKA_SASL_USERNAME: "app",
    KAFKA_SASL_PASSWORD: "hunter2",
    KAFKA_SSL: "true",
  });
  assert.deepEqual(config.sasl, {
    mechanism: "scram-sha-512",
    username: "app",
    password: "hunter2",
  });
  assert.equal(config.ssl, true);
  assert.match(
    configError({
      KAFKA_SASL_MECHANISM: "gssapi",
      KAFKA_SASL_USERNAME: "a",
      KAFKA_SASL_PASSWORD: "b",
    }),
    /not one of plain/,
  );
  assert.match(
    configError({ KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "app" }),
    /^KAFKA_SASL_PASSWORD: is needed/,
  );
  assert.match(configError({ KAFKA_SASL_USERNAME: "app" }), /^KAFKA_SASL_MECHANISM: is needed/);
  assert.match(configError({ KAFKA_SSL: "maybe" }), /^KAFKA_SSL: "maybe" is not true or false/);
});

Deno.test("secrets never show: tokens in URLs, SASL passwords, the token itself", () => {
  assert.equal(
    redact("wss://ws.finnhub.io?token=c0ffee123&x=1"),
    "wss://ws.finnhub.io?token=***&x=1",
  );
  assert.equal(
    redact("connecting to wss://h/?a=1&TOKEN=abc"),
    "connecting to wss://h/?a=1&TOKEN=***",
  );
  assert.equal(redact("https://user:pass@host/x"), "https://user:***@host/x");
  assert.match(
    configError({ FINNHUB_WS_URL: "http://x/?token=c0ffee123" }),
    /"http:" is not one of ws: wss:/,
  );
  assert.ok(!configError({ FINNHUB_WS_URL: "not a url?token=c0ffee123" }).includes("c0ffee123"));
});

Deno.test("durations and times as people write them in flags and URLs", () => {
  assert.equal(parseDuration("1500"), 1_500);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration(" 15m "), 900_000);
  assert.equal(parseDuration("2h"), 7_200_000);
  for (const bad of ["", "1.5s", "-1s", "5d", "m", "1e3", "1234567890"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
  assert.equal(parseTime("1700000000123"), 1_700_000_000_123);
  assert.equal(parseTime("2026-01-05T14:30:00Z"), Date.UTC(2026, 0, 5, 14, 30));
  for (const bad of ["2026-01-05", "2026-13-45T00:00:00Z", "yesterday", "-5"]) {
    assert.equal(parseTime(bad), undefined, bad);
  }
});

Deno.test("TLS files: read once into the config; each mistake is one line naming the variable", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "market-stream-tls-" });
  const SECRET = "c2VjcmV0LWtleS1tYXRlcmlhbA";
  const files = {
    ca: "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n",
    cert: "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n",
    key: `-----BEGIN PRIVATE KEY-----\n${SECRET}\n-----END PRIVATE KEY-----\n`,
    encrypted:
      `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${SECRET}\n-----END ENCRYPTED PRIVATE KEY-----\n`,
    der: "0\u0082\u0001\n",
  };
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  try {
    await t.step("a CA alone turns TLS on; a certificate comes with its key", () => {
      const ca = loadConfig({ KAFKA_SSL_CA: `${dir}/ca` });
      assert.equal(ca.ssl, true);
      assert.deepEqual(ca.sslFiles, { ca: files.ca });
      const mtls = loadConfig({
        KAFKA_SSL_CA: `${dir}/ca`,
        KAFKA_SSL_CERT: `${dir}/cert`,
        KAFKA_SSL_KEY: `${dir}/key`,
      });
      assert.deepEqual(mtls.sslFiles, { ca: files.ca, cert: files.cert, key: files.key });
      assert.ok(Object.isFrozen(mtls.sslFiles));
      assert.equal(loadConfig({}).sslFiles, undefined);
    });
    await t.step("mistakes", () => {
      const cases: [Record<string, string>, RegExp][] = [
        [
          { KAFKA_SSL_CA: `${dir}/nope.pem` },
          /^KAFKA_SSL_CA: ".*\/nope\.pem": no such file \(example: KAFKA_SSL_CA=certs\/ca\.pem\)$/,
        ],
        [{ KAFKA_SSL_CA: dir }, /^KAFKA_SSL_CA: ".*": a folder, not a file/],
        [{ KAFKA_SSL_CA: `${dir}/der` }, /^KAFKA_SSL_CA: ".*\/der" holds no PEM certificate/],
        [{ KAFKA_SSL_CA: `${dir}/key` }, /^KAFKA_SSL_CA: ".*\/key" holds no PEM certificate/],
        [{ KAFKA_SSL_KEY: `${dir}/key` }, /^KAFKA_SSL_CERT: is needed with KAFKA_SSL_KEY/],
        [{ KAFKA_SSL_CERT: `${dir}/cert` }, /^KAFKA_SSL_KEY: is needed with KAFKA_SSL_CERT/],
        [
          { KAFKA_SSL_CERT: `${dir}/cert`, KAFKA_SSL_KEY: `${dir}/cert` },
          /^KAFKA_SSL_KEY: ".*\/cert" holds no PEM private key/,
        ],
        [
          { KAFKA_SSL_CERT: `${dir}/cert`, KAFKA_SSL_KEY: `${dir}/encrypted` },
          /^KAFKA_SSL_KEY: ".*\/encrypted" is an encrypted key: decrypt it once \(openssl pkey/,
        ],
        [
          { KAFKA_SSL: "false", KAFKA_SSL_CA: `${dir}/ca` },
          /^KAFKA_SSL: is false, but KAFKA_SSL_CA or KAFKA_SSL_CERT needs TLS/,
        ],
      ];
      for (const [env, expected] of cases) {
        const message = configError(env);
        assert.match(message, expected);
        assert.equal(message.split("\n").length, 1, message);
        assert.ok(!message.includes(SECRET), "no key material in the message");
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
