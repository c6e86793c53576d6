/**
 * End-to-end latency (the producer's `received-at` header to the moment a trade is
 * applied), as p50/p99 over the last minute.
 *
 * At 100k records/s a minute of samples would be millions of numbers, so each
 * second keeps a histogram instead: exact 1 ms buckets up to 100 ms, then buckets
 * of 10 ms, 100 ms and 1 s (at most 10 % off), and one bucket above 100 s. Each
 * bucket holds (its lower edge, its upper edge], as Prometheus's `le` means: a
 * latency (whole ms: the difference of two wall clocks) equal to an edge counts
 * under that edge.
 * Recording is one array increment; a quantile merges the 60 histograms, which the
 * views do a few times a second at most.
 */

const EXACT = 101; // 0-100 ms: one bucket per ms
const BUCKETS = EXACT + 90 + 90 + 90 + 1;

/** The bucket of a latency in ms (negative ones, from clock skew, count as 0). */
export function latencyBucket(ms: number): number {
  if (!(ms > 0)) return 0;
  if (ms <= 100) return Math.ceil(ms);
  if (ms <= 1_000) return EXACT + Math.ceil((ms - 100) / 10) - 1;
  if (ms <= 10_000) return EXACT + 90 + Math.ceil((ms - 1_000) / 100) - 1;
  if (ms <= 100_000) return EXACT + 180 + Math.ceil((ms - 10_000) / 1_000) - 1;
  return BUCKETS - 1;
}

/** The value a bucket stands for: exact up to 100 ms, else the middle of its range. */
export function bucketValue(bucket: number): number {
  if (bucket < EXACT) return bucket;
  if (bucket < EXACT + 90) return 100 + (bucket - EXACT) * 10 + 5;
  if (bucket < EXACT + 180) return 1_000 + (bucket - EXACT - 90) * 100 + 50;
  if (bucket < EXACT + 270) return 10_000 + (bucket - EXACT - 180) * 1_000 + 500;
  return 100_000;
}

/** The upper edge of a bucket, ms, included in it (Infinity for the last). */
function bucketEnd(bucket: number): number {
  if (bucket < EXACT) return bucket;
  if (bucket < EXACT + 90) return 100 + (bucket - EXACT + 1) * 10;
  if (bucket < EXACT + 180) return 1_000 + (bucket - EXACT - 90 + 1) * 100;
  if (bucket < EXACT + 270) return 10_000 + (bucket - EXACT - 180 + 1) * 1_000;
  return Infinity;
}

export class LatencyWindow {
  readonly #seconds: number;
  readonly #stamps: Float64Array;
  readonly #counts: Uint32Array;
  readonly #merged = new Float64Array(BUCKETS);

  constructor(seconds = 60) {
    this.#seconds = seconds;
    this.#stamps = new Float64Array(seconds).fill(-1);
    this.#counts = new Uint32Array(seconds * BUCKETS);
  }

  /** Records one latency (ms) observed at wall time `nowMs`. */
  record(latencyMs: number, nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const row = second % this.#seconds;
    if (this.#stamps[row] !== second) {
      this.#stamps[row] = second;
      this.#counts.fill(0, row * BUCKETS, (row + 1) * BUCKETS);
    }
    this.#counts[row * BUCKETS + latencyBucket(latencyMs)]++;
  }

  /** The q-quantile (0 < q <= 1) over the last `seconds` seconds, or null with no samples. */
  quantile(q: number, nowMs: number): number | null {
    const current = Math.floor(nowMs / 1000);
    const merged = this.#merged;
    merged.fill(0);
    let total = 0;
    for (let row = 0; row < this.#seconds; row++) {
      const stamp = this.#stamps[row];
      if (stamp <= current - this.#seconds || stamp > current) continue;
      for (let b = 0; b < BUCKETS; b++) {
        const count = this.#counts[row * BUCKETS + b];
        merged[b] += count;
        total += count;
      }
    }
    return quantileOf(merged, total, q);
  }
}

/** The q-quantile of a histogram over the buckets above, or null when it is empty. */
function quantileOf(counts: Float64Array, total: number, q: number): number | null {
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let b = 0; b < BUCKETS; b++) {
    seen += counts[b];
    if (seen >= rank) return bucketValue(b);
  }
  return bucketValue(BUCKETS - 1);
}

/**
 * Every latency since the start, in the same buckets: the quantiles of a whole run
 * (consumer.ts --limit's summary), in constant memory however long it runs.
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  #total = 0;
  #sumMs = 0;

  record(latencyMs: number): void {
    this.#counts[latencyBucket(latencyMs)]++;
    this.#total++;
    this.#sumMs += Math.max(0, latencyMs);
  }

  get count(): number {
    return this.#total;
  }

  /** Every latency added up, ms (negative ones as 0). */
  get sumMs(): number {
    return this.#sumMs;
  }

  /**
   * Per bound (ms, ascending), how many latencies were at most it: Prometheus's
   * cumulative `le` buckets. Exact when every bound is a bucket edge (0-100 ms,
   * then steps of 10, 100 and 1,000 ms); otherwise a bucket counts under a bound
   * only when its whole range lies at or below it.
   */
  cumulative(boundsMs: readonly number[]): number[] {
    const out: number[] = [];
    let b = 0;
    let seen = 0;
    for (const bound of boundsMs) {
      while (b < BUCKETS - 1 && bucketEnd(b) <= bound) seen += this.#counts[b++];
      out.push(seen);
    }
    return out;
  }

  quantile(q: number): number | null {
    return quantileOf(this.#counts, this.#total, q);
  }
}

/**
 * The `received-at` header as ms, parsed from its bytes without building a string
 * (it runs per record). Returns NaN when it is missing or not decimal digits.
 */
export function parseReceivedAt(header: unknown): number {
  if (Array.isArray(header)) header = header[0];
  if (typeof header === "string") return /^\d{1,16}$/.test(header) ? Number(header) : NaN;
  if (!(header instanceof Uint8Array) || header.length === 0 || header.length > 16) return NaN;
  let value = 0;
  for (let i = 0; i < header.length; i++) {
    const digit = header[i] - 48;
    if (digit < 0 || digit > 9) return NaN;
    value = value * 10 + digit;
  }
  return value;
}
