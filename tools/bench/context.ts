/**
 * What every measurement of `deno task bench` gets (the Context bench.ts builds), and
 * how a run of our scripts is read: their summary lines, and why a child failed.
 */

import type { Finished, Running } from "./lib.ts";

export interface Context {
  /** The repository: children run here, with relative paths as their tasks expect. */
  readonly root: string;
  readonly brokers: string;
  readonly python: string;
  /** `key<TAB>value` lines, encodeTrade output of the simulated market (relative to root). */
  readonly recordsFile: string;
  readonly recordsInFile: number;
  readonly seed: number;
  readonly symbols: readonly string[];
  /** Task argv (`deno run <flags>`), without the script. */
  readonly argv: {
    readonly produce: string[];
    readonly consume: string[];
    readonly dashboard: string[];
    /** For tools/bench/kafkajs_baseline.ts. */
    readonly kafkajs: string[];
  };
  /** Environment every child gets (brokers, no colour). */
  readonly env: Record<string, string>;
  newTopic(partitions: number): Promise<string>;
  newGroup(): string;
  /** Records on a topic: the sum of its partitions' end offsets. */
  recordsOn(topic: string): Promise<number>;
  readonly log: (line: string) => void;
  /** Children of the bench, so a Ctrl+C can stop them. */
  readonly children: Set<Running>;
}

const number = (text: string) => Number(text.replaceAll(",", ""));

/** `acked N (R/s)` and `dropped N` of producer.ts's summary line. */
export function parseProducerSummary(
  lines: readonly string[],
): { acked: number; rate: number; dropped: number } | null {
  const line = lines.find((l) => l.startsWith("summary: "));
  const match = line && /acked ([\d,]+) \(([\d,]+)\/s\)/.exec(line);
  if (!line || !match) return null;
  const dropped = /dropped ([\d,]+)/.exec(line);
  return {
    acked: number(match[1]),
    rate: number(match[2]),
    dropped: dropped ? number(dropped[1]) : 0,
  };
}

export interface ConsumerSummary {
  records: number;
  seconds: number;
  rate: number;
  samples: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
}

/** consumer.ts --limit's summary line. */
export function parseConsumerSummary(lines: readonly string[]): ConsumerSummary | null {
  const line = lines.find((l) => l.startsWith("summary: "));
  const read = line && /read ([\d,]+) records in ([\d.]+) s \(([\d,]+) records\/s/.exec(line);
  if (!line || !read) return null;
  const latency = /p50 ([\d.]+) ms, p99 ([\d.]+) ms, p99\.9 ([\d.]+) ms \(([\d,]+) samples\)/
    .exec(line);
  return {
    records: number(read[1]),
    seconds: Number(read[2]),
    rate: number(read[3]),
    samples: latency ? number(latency[4]) : 0,
    p50: latency ? Number(latency[1]) : null,
    p99: latency ? Number(latency[2]) : null,
    p999: latency ? Number(latency[3]) : null,
  };
}

export function failure(done: Finished, what: string): string {
  if (done.timedOut) return `${what} timed out`;
  const tail = done.stderr.filter((l) => l.trim() !== "" && !l.includes("--env-file")).slice(-2);
  return `${what} exited with code ${done.code}${tail.length ? `: ${tail.join(" | ")}` : ""}`;
}
