/**
 * `deno task bench`: its parts (the consumer's --limit summary, the whole-run
 * latency histogram, SSE push accounting, RSS growth, the table), and the quick
 * run end to end with the task's own permission set against the real broker: every
 * row is there, with numbers a reader could believe.
 */

import assert from "node:assert/strict";
import { type ConsumerCounts } from "../consumer/apply.ts";
import { parseConsumerFlags } from "../consumer/flags.ts";
import { LatencyHistogram } from "../consumer/latency.ts";
import { limitSummary } from "../consumer/report.ts";
import { parseConsumerSummary, parseProducerSummary } from "../tools/bench/context.ts";
import { parseWatchLine, quantile, rssSlopeMbPerMin } from "../tools/bench/lib.ts";
import {
  busiestSpan,
  parsePush,
  type Push,
  pushLatencies,
  receivedAtByKey,
  watchPushes,
} from "../tools/bench/sse_probe.ts";
import { benchAlertSpecs } from "../tools/bench/dashboard.ts";
import { Aggregator } from "../consumer/candles.ts";
import { FeedLog, summarizeFeed } from "../consumer/feed.ts";
import { Hub } from "../dashboard/hub.ts";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { MAX_RULES, parseAlertSpecs } from "../lib/alert_rules.ts";
import { profileFor } from "../producer/market_sim.ts";
import { parseBenchFlags } from "../tools/bench/bench.ts";
import { renderTable, throughputRow } from "../tools/bench/table.ts";
import { readRecords } from "../tools/bench/kafkajs_baseline.ts";
import { packageOf, summarize } from "../tools/bench/profile.ts";
import { ROOT } from "../tools/scripts.ts";
import { createCounters, formatSummary } from "../producer/status.ts";
import { cachedDefaultPartitioner } from "../producer/kafka_producer.ts";
import { Partitioners } from "kafkajs";

function counts(applied: number): ConsumerCounts {
  return {
    applied,
    rejected: 2,
    rejectedByKind: {},
    tooLate: 1,
    tooEarly: 0,
    symbolCap: 0,
    redelivered: 0,
    dlqForwarded: 0,
    dlqFailed: 0,
  };
}

Deno.test("consumer --limit: flag, whole-run quantiles, and the summary the bench reads", async (t) => {
  await t.step("--limit takes a positive whole number", () => {
    assert.equal(parseConsumerFlags(["--limit=1000000"]).limit, 1_000_000);
    assert.throws(() => parseConsumerFlags(["--limit=0"]), /not a positive whole number/);
    assert.throws(() => parseConsumerFlags(["--limit=1e6"]), /not a positive whole number/);
  });

  await t.step("the histogram keeps every sample of a run, exact up to 100 ms", () => {
    const histogram = new LatencyHistogram();
    assert.equal(histogram.quantile(0.5), null);
    for (let i = 0; i < 1000; i++) histogram.record(i < 990 ? 3 : 250);
    assert.equal(histogram.count, 1000);
    assert.equal(histogram.quantile(0.5), 3);
    assert.equal(histogram.quantile(0.99), 3);
    assert.equal(histogram.quantile(0.999), 245); // the 10 ms bucket (240, 250], its middle
  });

  await t.step("the summary line round-trips through the bench's parser", () => {
    const histogram = new LatencyHistogram();
    for (let i = 1; i <= 2000; i++) histogram.record(i % 20);
    const line = limitSummary(counts(1_000_000), { first: 10_000, lastDone: 15_000 }, histogram);
    const parsed = parseConsumerSummary(["something else", line]);
    assert.deepEqual(parsed, {
      records: 1_000_003, // applied + rejected + too late: every record read counts
      seconds: 5,
      rate: 200_001,
      samples: 2000,
      p50: 9,
      p99: 19,
      p999: 19,
    });
    const none = limitSummary(counts(5), { first: null, lastDone: null }, new LatencyHistogram());
    assert.match(none, /no samples/);
    assert.equal(parseConsumerSummary([none])?.samples, 0);
  });

  await t.step("the producer's own summary line gives the acked rate", () => {
    const line = formatSummary("sim", 2_000, {
      received: 100_000,
      acked: 100_000,
      queued: 0,
      dropped: 0,
      possiblyDuplicated: 0,
      rejected: new Map(),
      reconnects: 0,
    });
    assert.deepEqual(parseProducerSummary([line]), { acked: 100_000, rate: 50_000, dropped: 0 });
    const full = formatSummary("sim", 1_000, {
      ...createCounters(),
      received: 10_000,
      acked: 7_500,
      dropped: 2_500,
    });
    assert.equal(parseProducerSummary([full])?.dropped, 2_500); // the queue was full
  });
});

Deno.test("the producer's cached partitioner picks the default partitioner's partitions", () => {
  const cached = cachedDefaultPartitioner();
  const reference = Partitioners.DefaultPartitioner();
  const metadata = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      partitionErrorCode: 0,
      partitionId: i,
      leader: 1,
      replicas: [1],
      isr: [1],
    }));
  const keys = ["AAPL", "MSFT", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1", "é"];
  const seen = new Set<number>();
  for (const partitions of [1, 3, 7, 3]) { // back to 3: a changed count is not served stale
    for (const key of keys) {
      const args = {
        topic: "t",
        partitionMetadata: metadata(partitions),
        message: { key, value: "" },
      };
      const expected = reference(args);
      assert.equal(cached(args), expected, `${key} on ${partitions} partitions`);
      assert.equal(cached(args), expected, `${key} on ${partitions} partitions, cached`);
      seen.add(expected);
    }
  }
  assert.ok(seen.size > 2, "keys spread over partitions");
  const explicit = {
    topic: "t",
    partitionMetadata: metadata(3),
    message: { key: "AAPL", value: "", partition: 2 },
  };
  assert.equal(cached(explicit), 2);
});

Deno.test("bench pieces: SSE pushes to per-trade latency, RSS growth, the table", async (t) => {
  await t.step(
    "an event stream read in odd chunks gives each push's trades, send time and alerts",
    async () => {
      // Events cut mid-line and mid-event, a comment, and an event without stats.
      const chunks = [
        'id: a-1\nevent: delta\ndata: {"stats":[{"symbol":"A","trades":3},',
        '{"symbol":"B","trades":1}],"now":1000}\n\n: keep-alive\n\nevent: snapshot\ndata: {"candles":[]}\n\n',
        'event: delta\ndata: {"stats":[{"symbol":"A","tr',
        'ades":5}],"alerts":[{},{}],"now":1050}\n\n',
      ];
      await using server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen() {} },
        () =>
          new Response(
            ReadableStream.from(chunks).pipeThrough(new TextEncoderStream()),
            { headers: { "content-type": "text/event-stream" } },
          ),
      );
      const pushes: Push[] = [];
      await watchPushes(`http://127.0.0.1:${server.addr.port}/events`, {
        signal: AbortSignal.timeout(5_000),
        onPush: (push) => pushes.push(push),
      });
      // Every event is a push, with or without stats.
      assert.deepEqual(
        pushes.map(({ trades, sentAt, alerts }) => ({ trades, sentAt, alerts })),
        [
          { trades: new Map([["A", 3], ["B", 1]]), sentAt: 1000, alerts: 0 },
          { trades: new Map(), sentAt: null, alerts: 0 },
          { trades: new Map([["A", 5]]), sentAt: 1050, alerts: 2 },
        ],
      );
      assert.equal(parsePush("not json", 0), null);
      assert.equal(parsePush("7", 0), null);
    },
  );

  await t.step("each trade is charged to the first push that counts it", async () => {
    const received = await receivedAtByKey([
      "A\treceived-at=100,source=sim",
      "B\treceived-at=105,source=sim",
      "A\treceived-at=110,source=sim",
      "A\tsource=sim,received-at=120",
    ]);
    assert.deepEqual(received, new Map([["A", [100, 110, 120]], ["B", [105]]]));
    const pushes = [
      { at: 130, trades: new Map([["A", 2]]) }, // A#1 30 ms, A#2 20 ms
      { at: 140, trades: new Map([["B", 1]]) }, // B#1 35 ms
      { at: 200, trades: new Map([["A", 2]]) }, // nothing new for A
      { at: 210, trades: new Map() }, // a push without stats
    ].map((push) => ({ ...push, sentAt: push.at, alerts: 0 }));
    const { latencies, missing } = pushLatencies(pushes, received);
    assert.deepEqual([...latencies], [20, 30, 35]);
    assert.equal(missing, 1); // A#3 never reached a push, and is counted
    assert.equal(quantile(latencies, 0.5), 30);
    assert.equal(quantile(latencies, 1), 35);
    assert.equal(quantile(new Float64Array(), 0.5), null);
  });

  await t.step("the bound: the most pushes in any 1 s span, half-open", () => {
    const every50 = Array.from({ length: 21 }, (_, i) => i * 50); // 0, 50, …, 1000 ms
    assert.equal(busiestSpan(every50, 1_000).length, 20); // 1000 starts the next span
    assert.equal(busiestSpan([...every50, 999], 1_000).length, 21);
    assert.deepEqual(busiestSpan([2_000, 0, 1_500, 1_999], 1_000), [1_500, 1_999, 2_000]);
    assert.deepEqual(busiestSpan([], 1_000), []);
  });

  await t.step("the bench's ALERTS: 40 rules a symbol, levels either side of the start", () => {
    const symbols = ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD"];
    const rules = parseAlertSpecs(benchAlertSpecs(symbols));
    assert.equal(rules.length, 120);
    assert.ok(rules.length * 5 / 3 <= MAX_RULES); // the bench's five symbols fit
    for (const symbol of symbols) {
      const start = profileFor(symbol).price;
      const levels = rules.flatMap((r) => r.symbol === symbol && r.kind === "above" ? r.level : []);
      assert.equal(levels.length, 18);
      assert.equal(levels.filter((level) => level > start).length, 9, symbol);
      assert.ok(Math.max(...levels) < start * 1.005 && Math.min(...levels) > start * 0.995);
      const kinds = new Set(rules.filter((r) => r.symbol === symbol).map((r) => r.kind));
      assert.deepEqual([...kinds].sort(), ["above", "below", "move", "silent"]);
    }
  });

  await t.step("RSS: the watcher's lines, and growth after the warm-up only", () => {
    assert.deepEqual(parseWatchLine("1500 102400 204800"), { t: 1.5, rssMb: 100, hwmMb: 200 });
    assert.equal(parseWatchLine("Traceback (most recent call last):"), null);
    const flat = Array.from({ length: 60 }, (_, t) => ({ t, mb: t < 5 ? 20 * t : 100 }));
    assert.equal(Math.round(rssSlopeMbPerMin(flat, 5)! * 10), 0);
    const leaking = Array.from({ length: 60 }, (_, t) => ({ t, mb: 100 + t / 6 }));
    assert.equal(Math.round(rssSlopeMbPerMin(leaking, 5)!), 10); // 10 MB per minute
  });

  await t.step("ratios are ours over each baseline, and targets are judged on them", () => {
    const base = { seconds: 1, records: 1, machineBusyPercent: 50 };
    const spec = { id: "p", label: "producer", unit: "trades/s" };
    const row = throughputRow([
      { ...base, client: "ours", rate: 100_000 },
      { ...base, client: "kcat", rate: 400_000 },
      { ...base, client: "kafka-python", rate: 10_000 },
    ], { ...spec, targets: { kcat: 0.5, "kafka-python": 5 } });
    assert.equal(row.ratios.kcat, 0.25);
    assert.equal(row.ratios["kafka-python"], 10);
    assert.equal(row.met, false); // 0.25x kcat misses the 0.5x target
    // Rounds: each client's best counts; a client whose every round failed has none.
    const rounds = throughputRow([
      { ...base, client: "ours", rate: 90_000 },
      { ...base, client: "kcat", rate: null, error: "timed out" },
      { ...base, client: "ours", rate: 100_000 },
      { ...base, client: "kcat", rate: null, error: "timed out" },
    ], { ...spec, targets: { kcat: 0.5 } });
    assert.equal(rounds.ours, 100_000);
    assert.equal(rounds.baselines.kcat, null);
    assert.equal(rounds.met, null); // not judged without a baseline
    assert.equal(rounds.errors.length, 2); // and both failures are reported
    const table = renderTable([row]);
    assert.match(table, /100,000/);
    assert.match(table, /400,000 \(0\.25x\)/);
    assert.match(table, /10,000 \(10x\)/);
    assert.match(table, /NO$/m);
  });

  await t.step("baselines read the same records file; the profiler names where time goes", () => {
    const text = 'AAPL\t{"v":1}\nBINANCE:BTCUSDT\t{"v":1,"x":"a\\tb"}\nno tab\nMSFT\t{}';
    assert.deepEqual(readRecords(text, 10), [
      ["AAPL", '{"v":1}'],
      ["BINANCE:BTCUSDT", '{"v":1,"x":"a\\tb"}'],
      ["MSFT", "{}"],
    ]);
    assert.equal(readRecords(text, 1).length, 1);
    const kafkajs = "file:///w/node_modules/.deno/kafkajs@2.2.4/node_modules/kafkajs/src/x.js";
    assert.equal(packageOf(kafkajs, "encode"), "kafkajs");
    assert.equal(packageOf("file:///w/main/publisher.ts", "pump"), "ours");
    assert.equal(packageOf("ext:deno_node/internal/buffer.mjs", "FastBuffer"), "Deno runtime (JS)");
    assert.equal(packageOf("", "(garbage collector)"), "GC");
    const frame = (functionName: string, url = "") => ({ functionName, url, lineNumber: 0 });
    const { total, packages } = summarize({
      nodes: [
        { id: 1, callFrame: frame("(root)") },
        { id: 2, callFrame: frame("encode", kafkajs) },
        { id: 3, callFrame: frame("(garbage collector)") },
      ],
      samples: [2, 2, 2, 3],
      timeDeltas: [1000, 1000, 1000, 1000],
    });
    assert.equal(total, 4);
    assert.deepEqual(packages, [["kafkajs", 3], ["GC", 1]]);
  });

  await t.step("flags: a quick run never overwrites the committed results", () => {
    assert.equal(parseBenchFlags([]).out, "tools/bench/results.json");
    assert.equal(parseBenchFlags(["--quick"]).out, "tools/bench/out/results-quick.json");
    assert.equal(parseBenchFlags(["--long"]).plan.memorySeconds, 600);
    assert.equal(parseBenchFlags(["--repeat=3"]).plan.repeat, 3);
    assert.deepEqual([...parseBenchFlags(["--only=sse,producer"]).only], ["sse", "producer"]);
    assert.throws(() => parseBenchFlags(["--only=nothing"]), /not one of/);
    assert.throws(() => parseBenchFlags(["--quick", "--long"]), /exclude each other/);
    assert.throws(() => parseBenchFlags(["--fast"]), /^UsageError: unknown flag --fast/);
  });
});

const ROW_IDS = [
  "producer-1p",
  "producer-3p",
  "consumer",
  "e2e-1000",
  "e2e-10000",
  "e2e-50000",
  "sse-push",
  "sse-pushes-1",
  "sse-pushes-2",
  "sse-pushes-3",
  "sse-pushes-4",
  "sse-pushes-page",
  "rss-dashboard",
  "rss-dashboard-slope",
  "rss-producer",
  "rss-consumer",
];

Deno.test("deno task bench --quick: every row, sane numbers, in under a minute", async () => {
  const out = `tools/bench/out/test-${crypto.randomUUID().slice(0, 8)}.json`;
  // The task's own permission set (after `deno task kafka &&`): a missing permission fails here.
  const started = Date.now();
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "--no-prompt",
      "-P=bench",
      "tools/bench/bench.ts",
      "--quick",
      `--out=${out}`,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (Date.now() - started) / 1000;
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  try {
    assert.equal(output.code, 0, `bench --quick failed:\n${stderr}\n${stdout}`);
    assert.ok(seconds < 60, `took ${seconds} s`);
    const results = JSON.parse(await Deno.readTextFile(`${ROOT}${out}`));
    assert.equal(results.mode, "quick");
    assert.ok(results.machine.cores >= 1 && results.machine.kafka && results.machine.deno);
    const rows = new Map(results.rows.map((row: { id: string }) => [row.id, row]));
    assert.deepEqual([...rows.keys()], ROW_IDS);
    for (const id of ["producer-1p", "producer-3p"]) {
      const row = rows.get(id) as { ours: number; baselines: Record<string, number> };
      assert.ok(row.ours > 1_000 && row.ours < 10_000_000, `${id}: ${row.ours}`);
      for (const client of ["kcat", "kafka-python", "kafkajs naive"]) {
        assert.ok(row.baselines[client] > 100, `${id} ${client}: ${row.baselines[client]}`);
      }
    }
    const consumer = rows.get("consumer") as { ours: number; baselines: Record<string, number> };
    assert.ok(consumer.ours > 1_000, `consumer: ${consumer.ours}`);
    assert.ok(consumer.baselines.kcat > 1_000 && consumer.baselines["kafka-python"] > 1_000);
    for (const id of ["e2e-1000", "e2e-10000", "e2e-50000", "sse-push"]) {
      const p99 = (rows.get(id) as { ours: number }).ours;
      assert.ok(p99 >= 0 && p99 < 60_000, `${id} p99: ${p99}`);
    }
    // The dashboard at 10,000 trades/s, with alerts: every client within the bound, and
    // every acked trade applied and pushed to each.
    for (const id of ROW_IDS.filter((id) => id.startsWith("sse-pushes-"))) {
      const row = rows.get(id) as { ours: number; met: boolean };
      assert.ok(row.ours >= 1 && row.met, `${id}: ${row.ours} pushes in 1 s`);
    }
    const sse = results.runs.sse;
    assert.equal(sse.rules, 200);
    for (const client of sse.clients) assert.equal(client.applied, sse.acked, client.symbol);
    assert.equal(sse.page.studies.split(",").length, 4, "the page drew all four indicators");
    for (const id of ["rss-producer", "rss-consumer", "rss-dashboard"]) {
      const mb = (rows.get(id) as { ours: number }).ours;
      assert.ok(mb > 10 && mb < 2_000, `${id}: ${mb} MB`);
    }
    for (const id of ROW_IDS) {
      const label = (rows.get(id) as { label: string }).label;
      assert.ok(stdout.includes(label), `the table has no row "${label}"`);
    }
  } finally {
    await Deno.remove(`${ROOT}${out}`).catch(() => {});
  }
});

Deno.test("the hub's bound holds with heartbeats: at most 20 pushes in any 1 s", async () => {
  // Trades every few ms (pushes at the 50 ms spacing) and a heartbeat every 100 ms, so
  // that heartbeats keep falling between two pushes: each must wait its turn.
  const aggregator = new Aggregator({ intervalsMs: [1_000], maxCandles: 60, maxSymbols: 1 });
  const hub = new Hub({
    aggregator,
    status: () => ({
      connected: true,
      lag: 0,
      latencyP50Ms: 1,
      latencyP99Ms: 1,
      tradesPerSecond: 1,
      applied: 1,
      rejected: 0,
      tooLate: 0,
      tooEarly: 0,
      lastTradeAt: Date.now(),
    }),
    feed: () => summarizeFeed(new FeedLog(), { now: Date.now(), from: 0 }),
    pushIntervalMs: 50,
    heartbeatMs: 100,
    clientBufferBytes: 1 << 20,
    maxStreams: 1,
  });
  const stream = hub.open(
    { symbol: "A", explicit: true, intervalMs: 1_000, windowMs: 60_000 },
    null,
  );
  assert.ok(stream !== "full");
  const sent: number[] = [];
  const reading = (async () => {
    const events = stream.pipeThrough(new TextDecoderStream())
      .pipeThrough(new EventSourceParserStream());
    for await (const { data } of events) sent.push(parsePush(data, 0)!.sentAt!);
  })();
  for (let i = 0, until = Date.now() + 1_500; Date.now() < until; i++) {
    aggregator.apply({
      symbol: "A",
      price: 100 + i % 7,
      volume: 1,
      time: Date.now(),
      source: "sim",
    });
    hub.notify(["A"]);
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
  hub.close();
  await reading;
  // The stream's first event is the snapshot that answers the request: not a push.
  const busiest = busiestSpan(sent.slice(1), 1_000);
  assert.ok(sent.length >= 20, `${sent.length} pushes`);
  assert.ok(busiest.length <= 20, `${busiest.length} pushes in 1 s: ${busiest.join(", ")}`);
});
