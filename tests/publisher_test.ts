/**
 * The queue's own rules, with a sink that fails or stalls on command. (The real
 * broker is exercised end to end in producer_test.ts.)
 */

import assert from "node:assert/strict";
import type { Message } from "kafkajs";
import { Publisher, toMessages } from "../producer/publisher.ts";
import type { Trade } from "../lib/trade.ts";

function trades(from: number, count: number): Trade[] {
  return Array.from({ length: count }, (_, i) => ({
    symbol: ["AAPL", "MSFT"][(from + i) % 2],
    price: 100,
    volume: from + i,
    time: 1_700_000_000_000 + from + i,
  }));
}

const volumes = (messages: Message[]) =>
  messages.map((message) => JSON.parse(String(message.value)).volume);

/** A sink that records batches; `fail` failures first; `gate` holds sends until opened. */
function sink(fail = 0) {
  const batches: Message[][] = [];
  let open: () => void = () => {};
  let gate: Promise<void> | undefined;
  let calls = 0;
  return {
    batches,
    get calls() {
      return calls;
    },
    hold() {
      gate = new Promise((resolve) => open = resolve);
    },
    release() {
      gate = undefined;
      open();
    },
    async send(messages: Message[]) {
      calls++;
      if (gate) await gate;
      if (fail-- > 0) throw new Error("broker unreachable");
      batches.push(messages);
    },
  };
}

Deno.test("records carry key, timestamp and headers", () => {
  const [message] = toMessages(trades(7, 1), "replay", 1_700_000_000_999);
  assert.equal(message.key, "MSFT");
  assert.equal(message.timestamp, "1700000000007");
  assert.deepEqual(message.headers, { "received-at": "1700000000999", source: "replay" });
  assert.equal(JSON.parse(String(message.value)).source, "replay");
});

Deno.test("frames queued together go in one send; batches respect the byte limit", async () => {
  const s = sink();
  const publisher = new Publisher(s, { capacity: 10_000, maxBatchBytes: 20_000, log: () => {} });
  for (let i = 0; i < 10; i++) publisher.enqueue(trades(i * 10, 10), "sim", 1);
  await publisher.drained();
  assert.deepEqual(s.batches.map((batch) => batch.length), [100]);
  for (let i = 0; i < 10; i++) publisher.enqueue(trades(1000 + i * 100, 100), "sim", 1);
  await publisher.drained();
  const sizes = s.batches.slice(1).map((batch) => batch.length);
  assert.ok(sizes.length > 1 && sizes.every((size) => size < 200), `${sizes}`);
  assert.equal(sizes.reduce((a, b) => a + b), 1000);
  assert.equal(await publisher.close(1000), 0);
});

Deno.test("a failing broker: trades wait and then go out once, in order", async () => {
  const s = sink(3);
  const logs: string[] = [];
  const outages: { from: number; to: number; detail: string }[] = [];
  const publisher = new Publisher(s, {
    capacity: 10_000,
    log: (line) => logs.push(line),
    onOutage: (outage) => outages.push(outage),
  });
  const started = Date.now();
  publisher.enqueue(trades(0, 5), "finnhub", 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  publisher.enqueue(trades(5, 5), "finnhub", 2);
  await publisher.drained();
  assert.deepEqual(volumes(s.batches.flat()), Array.from({ length: 10 }, (_, i) => i));
  assert.equal(publisher.stats.sendErrors, 3);
  assert.equal(publisher.stats.acked, 10);
  // This sink wrote nothing before failing, but a real one may have written part of
  // the batch: every trade sent again is reported as possibly duplicated. The failed
  // batch goes again as it was; the trades queued meanwhile follow in a clean send.
  assert.equal(publisher.stats.possiblyDuplicated, 5);
  assert.equal(logs.filter((line) => line.includes("send failed")).length, 1, "logged once");
  // One outage for the feed topic: from the first failed send to the good one after.
  assert.equal(outages.length, 1, JSON.stringify(outages));
  assert.ok(outages[0].from >= started && outages[0].to > outages[0].from);
  assert.ok(outages[0].to <= Date.now());
  assert.ok(outages[0].detail.length > 0);
  assert.equal(await publisher.close(1000), 0);
});

Deno.test("a full queue drops new trades, counts them and says so", async () => {
  const s = sink();
  s.hold();
  const logs: string[] = [];
  const dropped: Trade[] = [];
  const publisher = new Publisher(s, {
    capacity: 100,
    log: (line) => logs.push(line),
    onDropped: (trades) => dropped.push(...trades),
  });
  assert.equal(publisher.enqueue(trades(0, 60), "finnhub", 1), 0);
  assert.equal(publisher.enqueue(trades(60, 60), "finnhub", 1), 20);
  assert.equal(publisher.enqueue(trades(120, 10), "finnhub", 1), 10);
  assert.equal(publisher.stats.dropped, 30);
  assert.equal(publisher.queued(), 100);
  assert.equal(logs.length, 1, "one line per interval, not one per frame");
  assert.match(logs[0], /queue full \(100 trades waiting for Kafka\): dropped 20 trades so far/);
  // The feed topic hears of exactly the trades dropped.
  assert.deepEqual(dropped.map((trade) => trade.volume), [
    ...Array.from({ length: 20 }, (_, i) => 100 + i),
    ...Array.from({ length: 10 }, (_, i) => 120 + i),
  ]);
  s.release();
  await publisher.drained();
  // What was kept is a prefix in order: nothing reordered around the hole.
  assert.deepEqual(volumes(s.batches.flat()), Array.from({ length: 100 }, (_, i) => i));
  assert.equal(await publisher.close(1000), 0);
});

Deno.test("close waits a bounded time and reports what Kafka never took", async () => {
  const s = sink();
  s.hold();
  const publisher = new Publisher(s, { capacity: 1000, log: () => {} });
  publisher.enqueue(trades(0, 42), "sim", 1);
  const started = Date.now();
  assert.equal(await publisher.close(200), 42);
  const waited = Date.now() - started;
  assert.ok(waited >= 190 && waited < 1000, `waited ${waited} ms`);
});

Deno.test("waitForRoom holds a fast source until the queue is short again", async () => {
  const s = sink();
  s.hold();
  const publisher = new Publisher(s, { capacity: 1000, maxBatch: 50, log: () => {} });
  publisher.enqueue(trades(0, 400), "sim", 1);
  let resumed = false;
  const waiting = publisher.waitForRoom().then(() => resumed = true);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(resumed, false, "400 queued is above the low-water mark of 4 batches");
  s.release();
  await waiting;
  assert.ok(publisher.queued() <= 200);
  await publisher.drained();
  assert.equal(await publisher.close(1000), 0);
});

/** What kafkajs rejects with once it gives up: `retriable: false` (e.g. MESSAGE_TOO_LARGE). */
function finalError(message: string): Error {
  return Object.assign(new Error(message), { retriable: false });
}

Deno.test("a send that cannot be retried stops the queue and says so, instead of looping", async () => {
  let calls = 0;
  const logs: string[] = [];
  const failures: string[] = [];
  const publisher = new Publisher({
    send() {
      calls++;
      return Promise.reject(finalError("message too large"));
    },
  }, {
    capacity: 1000,
    log: (line) => logs.push(line),
    onFailed: (reason) => failures.push(reason),
  });
  publisher.enqueue(trades(0, 10), "sim", 1);
  await publisher.drained();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(calls, 1, "no second try: it would fail the same way, forever");
  assert.deepEqual(failures, ["message too large"]);
  assert.equal(publisher.failure, "message too large");
  assert.equal(logs.length, 1, logs.join("\n"));
  assert.match(logs[0], /^kafka: send failed and cannot be retried: message too large; /);
  // What came after is kept (counted as queued), never sent; close does not wait for it.
  publisher.enqueue(trades(10, 5), "sim", 2);
  const started = Date.now();
  assert.equal(await publisher.close(5_000), 15);
  assert.ok(Date.now() - started < 500, "close returns at once: nothing more can be sent");
  assert.equal(calls, 1);
});

Deno.test("a batch sent again after a failed send is counted as possibly duplicated", async () => {
  // One send writes part of the batch (one broker of two answered), then fails.
  const written: Message[] = [];
  let calls = 0;
  const publisher = new Publisher({
    send(messages) {
      calls++;
      if (calls === 1) {
        written.push(...messages.slice(0, 4));
        return Promise.reject(new Error("one broker of two did not answer"));
      }
      written.push(...messages);
      return Promise.resolve();
    },
  }, { capacity: 1000, log: () => {} });
  publisher.enqueue(trades(0, 10), "sim", 1);
  await publisher.drained();
  publisher.enqueue(trades(10, 5), "sim", 2); // a later, clean send: not counted
  await publisher.drained();
  assert.equal(publisher.stats.acked, 15);
  assert.equal(written.length, 19, "the 4 written before the failure are in Kafka twice");
  assert.equal(publisher.stats.possiblyDuplicated, 10, "the whole resent batch, once");
  assert.equal(await publisher.close(1000), 0);
});

Deno.test("after a failed send, exactly that batch goes again, however many trades wait", async () => {
  // A broker that wrote the batch before the connection died keeps one copy only if
  // the copy is the same batch: a bigger one from the same first sequence is refused.
  const sizes: number[] = [];
  let calls = 0;
  const publisher = new Publisher({
    send(messages) {
      sizes.push(messages.length);
      if (++calls === 1) {
        publisher.enqueue(trades(10, 20), "sim", 2); // more arrive while it fails
        return Promise.reject(new Error("connection closed"));
      }
      return Promise.resolve();
    },
  }, { capacity: 1000, log: () => {} });
  publisher.enqueue(trades(0, 10), "sim", 1);
  await publisher.drained();
  assert.deepEqual(sizes, [10, 10, 20]);
  assert.equal(publisher.stats.acked, 30);
  assert.equal(await publisher.close(1000), 0);
});
