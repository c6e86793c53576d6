/**
 * TLS and auth against real secured brokers, started here from the project's own
 * Kafka jars: one that speaks only SASL_SSL with SCRAM-SHA-512 and a private CA, one
 * that speaks only SSL and requires a client certificate (mTLS). The producer and
 * the consumer run as their `:remote` tasks run them; kafka-python, an independent
 * client, checks what landed. Each mistake is one line and exit code 2, and no
 * password or key ever shows in any output.
 */

import assert from "node:assert/strict";
import { type Script, scriptArgs } from "../tools/scripts.ts";
import { uniqueName } from "./helpers/kafka.ts";
import { parseSummary, Proc, tradeId, tradesOf } from "./helpers/processes.ts";
import { makePki, readSecuredTopic, SecureBroker } from "./helpers/secure_broker.ts";

const TRADES = 600;

/** A script as its `:remote` task runs it, reading (and recording) only in `dir`. */
function run(script: Script, dir: string, args: string[], env: Record<string, string>): Proc {
  return new Proc([...scriptArgs(script, { files: dir }), ...args], env);
}

/** Trade ids, each with how many times it occurs. */
function countIds(ids: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** The trades of a recording (NDJSON of Finnhub frames), as ids. */
async function recordedIds(path: string): Promise<string[]> {
  const ids: string[] = [];
  for (const line of (await Deno.readTextFile(path)).trim().split("\n")) {
    const { data } = JSON.parse(JSON.parse(line).frame);
    for (const t of data) ids.push(tradeId({ symbol: t.s, price: t.p, volume: t.v, time: t.t }));
  }
  return ids;
}

Deno.test("secured clusters: SASL_SSL with SCRAM-SHA-512 and a private CA, and mTLS", async (t) => {
  await using pki = await makePki();
  await using sasl = new SecureBroker("sasl_ssl", pki);
  await using mtls = new SecureBroker("mtls", pki);
  await Promise.all([sasl.start(), mtls.start()]);
  const keyBody = (await Deno.readTextFile(pki.clientKey)).split("\n")[1];
  /** Nothing secret in a process's output: the password, the key. */
  const assertNoSecret = (output: string) => {
    assert.ok(!output.includes(sasl.password), "the SASL password is printed");
    assert.ok(!output.includes(keyBody), "the client key is printed");
  };

  for (const broker of [sasl, mtls]) {
    await t.step(
      `${broker.security}: every trade lands once; the consumer reads them`,
      async () => {
        const topic = uniqueName("secure");
        const recording = `${pki.dir}/${topic}.ndjson`;
        await using producer = run("produce-remote", pki.dir, [
          "--source=sim",
          "--rate=1000",
          `--limit=${TRADES}`,
          `--topic=${topic}`,
          `--record=${recording}`,
          "--status-interval=0",
        ], broker.env());
        const produced = await producer.explain(producer.done);
        assert.equal(produced.code, 0, produced.stderr);
        assert.equal(parseSummary(produced.stdout).acked, TRADES);
        assertNoSecret(produced.stdout + produced.stderr);

        const kept = tradesOf(await readSecuredTopic(broker.env(), topic));
        // The recording holds whole frames; --limit sent the first TRADES trades of them.
        const sent = (await recordedIds(recording)).slice(0, TRADES);
        assert.equal(kept.length, TRADES);
        assert.deepEqual(countIds(kept.map(({ record }) => tradeId(record))), countIds(sent));
        for (const { key, record } of kept) assert.equal(key, record.symbol);

        await using consumer = run("consume-remote", pki.dir, [`--limit=${TRADES}`, "--from=1h"], {
          ...broker.env(),
          KAFKA_TOPIC: topic,
          KAFKA_GROUP_ID: uniqueName("secure-group"),
        });
        const consumed = await consumer.explain(consumer.done);
        assert.equal(consumed.code, 0, consumed.stderr);
        assert.match(
          consumed.stdout,
          new RegExp(`^summary: read ${TRADES} records .* applied ${TRADES},`, "m"),
        );
        assertNoSecret(consumed.stdout + consumed.stderr);
      },
    );
  }

  await t.step("mistakes: one line naming the variable, exit code 2, nothing secret", async () => {
    const { KAFKA_SSL_CA: _, ...noCa } = sasl.env();
    const { KAFKA_SSL_CERT: _c, KAFKA_SSL_KEY: _k, ...noCert } = mtls.env();
    const cases: [string, Script, Record<string, string>, RegExp][] = [
      [
        "a wrong password",
        "produce-remote",
        { ...sasl.env(), KAFKA_SASL_PASSWORD: `wrong-${sasl.password}` },
        /^error: KAFKA_SASL_PASSWORD: the broker refused user "market-stream" \(SCRAM-SHA-512 authentication failed\)/,
      ],
      [
        "a wrong password (consumer)",
        "consume-remote",
        { ...sasl.env(), KAFKA_SASL_PASSWORD: `wrong-${sasl.password}` },
        /^error: KAFKA_SASL_PASSWORD: the broker refused user "market-stream"/,
      ],
      [
        "TLS without the private CA",
        "produce-remote",
        { ...noCa, KAFKA_SSL: "true" },
        /^error: KAFKA_SSL_CA: the broker's certificate is not trusted \(.+\): set KAFKA_SSL_CA/,
      ],
      [
        "mTLS without a client certificate",
        "consume-remote",
        noCert,
        /^error: KAFKA_SSL_CERT: the broker refused the TLS connection \(.+\): the cluster wants a client certificate/,
      ],
      [
        "a missing CA file",
        "produce-remote",
        { ...sasl.env(), KAFKA_SSL_CA: `${pki.dir}/missing.pem` },
        /^error: KAFKA_SSL_CA: ".*\/missing\.pem": no such file \(example: KAFKA_SSL_CA=certs\/ca\.pem\)$/,
      ],
      [
        "a missing CA file where the :remote tasks read certificates",
        "produce-remote",
        { ...sasl.env(), KAFKA_SSL_CA: "certs/missing-ca.pem" },
        /^error: KAFKA_SSL_CA: "certs\/missing-ca\.pem": no such file/,
      ],
    ];
    for (const [what, script, env, expected] of cases) {
      // The certs/ case runs with the task's own read paths, not the test folder.
      const files = env.KAFKA_SSL_CA?.startsWith("certs/") ? undefined : pki.dir;
      await using proc = new Proc([
        ...scriptArgs(script, { files }),
        ...script === "produce-remote" ? ["--source=sim", "--limit=10"] : ["--limit=10"],
      ], { ...env, KAFKA_TOPIC: uniqueName("mistake") });
      const { code, stdout, stderr } = await proc.done;
      assert.equal(code, 2, `${what}: ${stderr}`);
      // The start line comes first; then the one error line, alone.
      const lines = stderr.trim().split("\n").filter((line) =>
        !/^(producer:|consuming) /.test(line)
      );
      assert.equal(lines.length, 1, `${what}: ${JSON.stringify(stderr)}`);
      assert.match(lines[0], expected, what);
      assertNoSecret(stdout + stderr);
    }
  });

  await t.step(
    "a key the local task may not read: one line pointing to certs/ and :remote",
    async () => {
      await using proc = new Proc([...scriptArgs("produce"), "--source=sim", "--limit=10"], {
        ...mtls.env(),
        KAFKA_SSL_CA: "",
        KAFKA_SSL: "true",
      });
      const { code, stdout, stderr } = await proc.done;
      assert.equal(code, 2, stderr);
      assert.equal(
        stderr,
        `error: KAFKA_SSL_CERT: this task may not read "${pki.clientCert}": put it in certs/ and run ` +
          "the task's :remote variant (deno task produce:remote, consume:remote, dashboard:remote) " +
          "(example: KAFKA_SSL_CERT=certs/client.pem)\n",
      );
      assertNoSecret(stdout + stderr);
    },
  );
});
