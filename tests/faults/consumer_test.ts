/**
 * Fault suite, 3: the consumer (`deno task dashboard`) SIGKILLed mid-stream and
 * started again in the same group. The candles it reports after the restart, read
 * from its own /api/candles, equal the reference computed from every trade the
 * source sent: no trade counted twice, none missing.
 */

import assert from "node:assert/strict";
import {
  DEFAULT_INTERVALS_MS,
  DEFAULT_MAX_CANDLES,
  DEFAULT_MAX_SYMBOLS,
} from "../../consumer/candles.ts";
import type { Candle } from "../../consumer/candles.ts";
import type { CandleRow } from "../../dashboard/wire.ts";
import type { TradeRecord } from "../../lib/trade.ts";
import { assertCandlesEqual, reference } from "../helpers/candles_reference.ts";
import { FakeFinnhub } from "../helpers/fake_finnhub.ts";
import {
  printTally,
  readTopic,
  startDashboardConsumer,
  startProducer,
  tally,
  waitForCount,
  waitUntil,
} from "../helpers/processes.ts";
import { sleep } from "../../lib/async.ts";
import { BROKERS, uniqueName, withTopic } from "../helpers/kafka.ts";

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1"];
const COUNT = 10_000;

interface Health {
  consumer: { connected: boolean; applied: number; rejected: number; lag: number | null };
}

async function health(url: string): Promise<Health> {
  const response = await fetch(new URL("/healthz", url));
  return await response.json();
}

/** /api/candles as candles: its rows are [time, open, high, low, close, volume, vwap, trades]. */
async function candles(url: string, symbol: string, interval: number): Promise<Candle[]> {
  const query = new URLSearchParams({ symbol, interval: String(interval) });
  const response = await fetch(new URL(`/api/candles?${query}`, url));
  assert.equal(response.status, 200, `candles of ${symbol}`);
  const rows: CandleRow[] = (await response.json()).candles;
  return rows.map(([start, open, high, low, close, volume, vwap, trades]) => ({
    start,
    open,
    high,
    low,
    close,
    volume,
    vwap,
    trades,
    revision: 0,
  }));
}

Deno.test("fault 3: consumer SIGKILLed and restarted: its candles equal the reference", async () => {
  const fake = new FakeFinnhub();
  try {
    await withTopic(3, async (topic, _kafka, admin) => {
      const from = new Date(Date.now() - 1_000).toISOString();
      const consumerEnv = {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: uniqueName("faults-group"),
      };
      await using producer = await startProducer(
        [`--topic=${topic}`, `--symbols=${SYMBOLS.join(",")}`, "--status-interval=0"],
        { KAFKA_BROKERS: BROKERS, FINNHUB_TOKEN: fake.token, FINNHUB_WS_URL: fake.url },
      );
      await fake.waitForSubscribed(1, SYMBOLS, 30_000);
      const streaming = fake.stream({ symbols: SYMBOLS, rate: 1_000, count: COUNT });

      const first = await startDashboardConsumer([`--from=${from}`], consumerEnv);
      let appliedAtKill = 0;
      {
        await using _ = first;
        await waitUntil(
          "the first consumer to apply 3,000 trades",
          async () => (appliedAtKill = (await health(first.url)).consumer.applied) >= 3_000,
        );
        first.kill("SIGKILL");
        assert.equal((await first.done).signal, "SIGKILL");
      }
      await using second = await startDashboardConsumer([`--from=${from}`], consumerEnv);

      await streaming;
      await waitForCount(admin, topic, () => fake.sent.length);
      producer.kill("SIGTERM");
      assert.equal((await producer.done).code, 0);
      let state: Health | undefined;
      await waitUntil(
        () => `the restarted consumer to apply ${COUNT} trades (${JSON.stringify(state)})`,
        async () => {
          state = await health(second.url);
          return state.consumer.applied >= COUNT && state.consumer.lag === 0;
        },
        30_000,
      );
      // Anything counted twice would have arrived by now.
      await sleep(1_000);
      state = await health(second.url);

      const counts = tally(fake.sent, await readTopic(BROKERS, topic));
      printTally(
        "3 (consumer killed)",
        counts,
        `killed after ${appliedAtKill} applied; the restart applied ${state.consumer.applied}`,
      );
      assert.equal(counts.lost, 0, "lost");
      assert.equal(counts.doubled, 0, "doubled");
      assert.equal(state.consumer.applied, COUNT, "no trade counted twice or missed");
      assert.equal(state.consumer.rejected, 0);

      // The fake sends each symbol's trades in order, and Kafka keeps that order.
      const sent: TradeRecord[] = fake.sent.map((trade) => ({
        symbol: trade.s,
        price: trade.p,
        volume: trade.v,
        time: trade.t,
        conditions: trade.c,
        source: "finnhub",
      }));
      const expected = reference(
        sent,
        DEFAULT_INTERVALS_MS,
        DEFAULT_MAX_CANDLES,
        DEFAULT_MAX_SYMBOLS,
        Date.parse(from),
      );
      assert.equal(expected.applied.length, COUNT);
      for (const symbol of SYMBOLS) {
        for (const interval of DEFAULT_INTERVALS_MS) {
          assertCandlesEqual(
            await candles(second.url, symbol, interval),
            expected.candles(symbol, interval),
            `${symbol} ${interval} ms`,
          );
        }
      }
      second.kill("SIGTERM");
      assert.equal((await second.done).code, 0);
    });
  } finally {
    await fake.close();
  }
});
