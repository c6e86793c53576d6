/**
 * The dashboard's side of the latency: an SSE client that notes when each push
 * arrives and how many trades of each symbol it reflects (`stats[].trades`), and the
 * sum that turns those pushes into one latency per trade.
 *
 * A trade is "pushed" by the first event whose count for its symbol includes it:
 * records of one symbol share a partition, so the consumer applies them in the
 * order the topic holds them, and the k-th trade of a symbol is in every push that
 * counts k or more. Its latency is that push's arrival minus its `received-at`.
 */

import { EventSourceParserStream } from "eventsource-parser/stream";

export interface Push {
  /** Date.now() when the event was read. */
  readonly at: number;
  /** The server's clock when it built the push (`now`), or null when the event has none. */
  readonly sentAt: number | null;
  /** Trades applied per symbol, for the symbols the event carries stats for (maybe none). */
  readonly trades: ReadonlyMap<string, number>;
  /** Fired alerts the event carries. */
  readonly alerts: number;
}

/** One event's data as a push read at `at`, or null when it is not a JSON object. */
export function parsePush(data: string, at: number): Push | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const { stats, now, alerts } = parsed as { stats?: unknown; now?: unknown; alerts?: unknown };
  const trades = new Map<string, number>();
  for (const line of Array.isArray(stats) ? stats : []) {
    const { symbol, trades: n } = line as { symbol?: unknown; trades?: unknown };
    if (typeof symbol === "string" && typeof n === "number") trades.set(symbol, n);
  }
  return {
    at,
    sentAt: typeof now === "number" ? now : null,
    trades,
    alerts: Array.isArray(alerts) ? alerts.length : 0,
  };
}

/**
 * Reads `url` as an event stream until `signal` aborts; `onPush` sees every event
 * (snapshot or delta: each is a push), stamped with the time it was parsed.
 */
export async function watchPushes(
  url: string,
  options: { readonly signal: AbortSignal; readonly onPush: (push: Push) => void },
): Promise<void> {
  const { signal, onPush } = options;
  const response = await fetch(url, { signal, headers: { accept: "text/event-stream" } });
  if (!response.ok || response.body === null) {
    await response.body?.cancel();
    throw new Error(`GET ${url}: ${response.status}`);
  }
  const events = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream())
    .getReader();
  // The abort cancels the read itself: fetch's signal alone left a stream read for
  // minutes open until the server closed it.
  const cancel = () => events.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (let next = await events.read(); !next.done; next = await events.read()) {
      const push = parsePush(next.value.data, Date.now());
      if (push !== null) onPush(push);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

/**
 * One latency per trade (ms): for each symbol, the k-th `receivedAt` against the
 * first push counting k trades or more. Trades no push reached are counted apart.
 */
export function pushLatencies(
  pushes: readonly Push[],
  receivedAt: ReadonlyMap<string, readonly number[]>,
): { latencies: Float64Array; missing: number } {
  const out: number[] = [];
  let missing = 0;
  for (const [symbol, times] of receivedAt) {
    let next = 0;
    for (const push of pushes) {
      const count = push.trades.get(symbol);
      if (count === undefined) continue;
      while (next < count && next < times.length) out.push(push.at - times[next++]);
    }
    missing += times.length - next;
  }
  return { latencies: Float64Array.from(out).sort(), missing };
}

/**
 * Key and `received-at` of `kcat -f '%k\t%h\n'` lines, grouped by key in topic order
 * (read as they come: a long run's millions of lines are never held at once).
 */
export async function receivedAtByKey(
  lines: Iterable<string> | AsyncIterable<string>,
): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for await (const line of lines) {
    const tab = line.indexOf("\t");
    if (tab <= 0) continue;
    const match = /(?:^|,)received-at=(\d+)/.exec(line.slice(tab + 1));
    if (!match) continue;
    const key = line.slice(0, tab);
    let list = out.get(key);
    if (list === undefined) out.set(key, list = []);
    list.push(Number(match[1]));
  }
  return out;
}

/**
 * The busiest span of `spanMs` (half-open: a push at t and one at t + spanMs are in
 * different spans): its push times, for times in any order. Its length is the most
 * pushes any span held.
 */
export function busiestSpan(times: readonly number[], spanMs: number): number[] {
  const sorted = Float64Array.from(times).sort();
  let best = [0, 0];
  for (let first = 0, last = 0; last < sorted.length; last++) {
    while (sorted[last] - sorted[first] >= spanMs) first++;
    if (last + 1 - first > best[1] - best[0]) best = [first, last + 1];
  }
  return [...sorted.subarray(best[0], best[1])];
}
