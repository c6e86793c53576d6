/**
 * The pieces `bench.ts` is built from: child processes watched from outside (lines,
 * wall time, RSS from /proc), the machine and what else keeps it busy, quantiles
 * and RSS growth.
 *
 * /proc is read by tools/bench/procstat.py: Deno grants /proc only with --allow-all.
 */

import { fileURLToPath } from "node:url";
import { lines } from "../../lib/lines.ts";

/** The Python of Debian's python3-kafka (not whatever `python3` is first on PATH). */
export const PYTHON = "/usr/bin/python3";
const PROCSTAT = fileURLToPath(new URL("./procstat.py", import.meta.url));

export interface RssSample {
  /** Seconds since the process started. */
  readonly t: number;
  readonly mb: number;
}

export interface Finished {
  readonly code: number;
  readonly signal: string | null;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
  readonly wallMs: number;
  /** VmHWM at the last reading before the exit (the peak RSS), MB. */
  readonly peakRssMb: number | null;
  readonly rss: readonly RssSample[];
  readonly timedOut: boolean;
  /** With `countLines`: newline-ended lines on stdout, and when the first and last bytes came. */
  readonly lines?: { count: number; firstAt: number | null; lastAt: number | null };
}

interface SpawnOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Killed (SIGKILL after SIGTERM) past this; `timedOut` says so. */
  readonly timeoutMs: number;
  readonly rssEveryMs?: number;
  /** Count stdout lines instead of keeping them (for a consumer printing 100 MB). */
  readonly countLines?: boolean;
  /** Lines kept per stream (the last ones). */
  readonly keepLines?: number;
}

type LineListener = (line: string, stream: "out" | "err") => void;

export interface Running {
  readonly pid: number;
  readonly finished: Promise<Finished>;
  /** Calls `listener` with every line from now on. */
  onLine(listener: LineListener): void;
  kill(signal?: Deno.Signal): void;
}

/** One line of `procstat.py watch`: "ms rssKb hwmKb" -> seconds, VmRSS and VmHWM in MB. */
export function parseWatchLine(line: string): { t: number; rssMb: number; hwmMb: number } | null {
  const match = /^(\d+) (\d+) (\d+)$/.exec(line.trim());
  if (!match) return null;
  return {
    t: Number(match[1]) / 1000,
    rssMb: Number(match[2]) / 1024,
    hwmMb: Number(match[3]) / 1024,
  };
}

/** Calls `onLine` with each line of `stream`, keeping the last `max` of them in `keep`. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  keep: string[],
  max: number,
  onLine: (line: string) => void,
): Promise<void> {
  for await (const line of lines(stream)) {
    keep.push(line);
    if (keep.length > max) keep.shift();
    onLine(line);
  }
}

/** Writes `chunks` of text to a new file at `path`, as they are made. */
export async function writeChunks(path: string, chunks: Iterable<string>): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  await ReadableStream.from(chunks).pipeThrough(new TextEncoderStream()).pipeTo(file.writable);
}

async function countStreamLines(
  stream: ReadableStream<Uint8Array>,
): Promise<{ count: number; firstAt: number | null; lastAt: number | null }> {
  let count = 0;
  let firstAt: number | null = null;
  let lastAt: number | null = null;
  for await (const chunk of stream) {
    const now = performance.now();
    firstAt ??= now;
    lastAt = now;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) count++;
  }
  return { count, firstAt, lastAt };
}

/** Starts a process and watches it: its lines, its RSS every `rssEveryMs`, a timeout. */
export function spawnWatched(command: string, args: string[], options: SpawnOptions): Running {
  const started = performance.now();
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pid = child.pid;
  const rss: RssSample[] = [];
  let peak: number | null = null;
  // The watcher ends by itself once the pid is gone; its last line has the peak.
  const watcher = new Deno.Command(PYTHON, {
    args: [PROCSTAT, "watch", String(pid), String(options.rssEveryMs ?? 200)],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const watching = readLines(watcher.stdout, [], 0, (line) => {
    const sample = parseWatchLine(line);
    if (sample === null) return;
    peak = sample.hwmMb;
    rss.push({ t: sample.t, mb: sample.rssMb });
  }).then(() => watcher.status);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const keep = options.keepLines ?? 200;
  const listeners: LineListener[] = [];
  const onLine = (line: string, stream: "out" | "err") => {
    for (const listener of listeners) listener(line, stream);
  };
  const reading = Promise.all([
    options.countLines
      ? countStreamLines(child.stdout)
      : readLines(child.stdout, stdout, keep, (line) => onLine(line, "out")).then(() => undefined),
    readLines(child.stderr, stderr, keep, (line) => onLine(line, "err")),
  ]);
  let timedOut = false;
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill("SIGTERM");
    setTimeout(() => kill("SIGKILL"), 5_000);
  }, options.timeoutMs);
  const finished = (async (): Promise<Finished> => {
    const status = await child.status;
    clearTimeout(timer);
    const [lines] = await reading;
    await watching;
    return {
      code: status.code,
      signal: status.signal,
      stdout,
      stderr,
      wallMs: performance.now() - started,
      peakRssMb: peak,
      rss,
      timedOut,
      lines: lines ?? undefined,
    };
  })();
  return { pid, finished, kill, onLine: (listener) => listeners.push(listener) };
}

/** Resolves with the first line `match` accepts, or rejects when the process ends first. */
export function waitForLine(
  running: Running,
  match: (line: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for it")), timeoutMs);
    running.onLine((line) => {
      if (match(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    running.finished.then((done) => {
      clearTimeout(timer);
      reject(new Error(`it exited (code ${done.code}): ${done.stderr.slice(-3).join(" | ")}`));
    });
  });
}

/** The q-quantile of sorted numbers (nearest rank), or null for none. */
export function quantile(sorted: ArrayLike<number>, q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

/**
 * Growth of RSS over a run, MB per minute: a least-squares slope over the samples
 * after `warmupS` (start-up and the first buffers are not a leak).
 */
export function rssSlopeMbPerMin(samples: readonly RssSample[], warmupS: number): number | null {
  const kept = samples.filter((s) => s.t >= warmupS);
  if (kept.length < 3) return null;
  const n = kept.length;
  const meanT = kept.reduce((sum, s) => sum + s.t, 0) / n;
  const meanM = kept.reduce((sum, s) => sum + s.mb, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of kept) {
    num += (s.t - meanT) * (s.mb - meanM);
    den += (s.t - meanT) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

// ---------------------------------------------------------------------------
// The machine, and what else is running on it.

async function commandLine(command: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output();
    return new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr);
  } catch {
    return "";
  }
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  kernel: string;
  deno: string;
  v8: string;
  kafka: string;
  kafkajs: string;
  kcat: string;
  librdkafka: string;
  python: string;
  kafkaPython: string;
}

export async function describeMachine(
  kafkaVersion: string,
  kafkajsVersion: string,
): Promise<Machine> {
  const info = JSON.parse(await commandLine(PYTHON, [PROCSTAT, "machine"]) || "{}");
  const kcat = await commandLine("kcat", ["-V"]);
  const pythonVersion = await commandLine(PYTHON, ["--version"]);
  const kafkaPython = await commandLine(PYTHON, ["-c", "import kafka; print(kafka.__version__)"]);
  return {
    cpu: info.cpu ?? "unknown",
    cores: navigator.hardwareConcurrency,
    memoryGb: Math.round((info.memoryKb ?? 0) / 1024 / 1024 * 10) / 10,
    os: info.os ?? "unknown",
    kernel: info.kernel ?? "unknown",
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    kafka: kafkaVersion,
    kafkajs: kafkajsVersion,
    kcat: /Version (\S+)/.exec(kcat)?.[1] ?? "unknown",
    librdkafka: /librdkafka (\S+)/.exec(kcat)?.[1] ?? "unknown",
    python: pythonVersion.replace(/^Python /, ""),
    kafkaPython,
  };
}

/** Jiffies busy and total over all CPUs, from /proc/stat. */
export async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const [busy, total] = (await commandLine(PYTHON, [PROCSTAT, "cpu"])).split(" ").map(Number);
  return { busy: busy || 0, total: total || 0 };
}

/** Share of the whole machine (all cores) busy between two readings, 0-100. */
export function busyPercent(
  before: { busy: number; total: number },
  after: { busy: number; total: number },
): number {
  const total = after.total - before.total;
  return total > 0 ? Math.round((after.busy - before.busy) / total * 1000) / 10 : 0;
}

export interface BusyProcess {
  pid: number;
  name: string;
  /** Percent of one core over the window. */
  cpuPercent: number;
}

/** Processes other than this one that used CPU over `ms`, busiest first. */
export async function busyProcesses(ms: number): Promise<BusyProcess[]> {
  const text = await commandLine(PYTHON, [PROCSTAT, "busy", String(ms), String(Deno.pid)]);
  try {
    return JSON.parse(text);
  } catch {
    return [];
  }
}

export interface OtherLoad {
  readonly windowMs: number;
  readonly windows: number;
  /** CPU of everything outside the bench, percent of one core: mean and worst window. */
  readonly meanPercent: number;
  readonly maxPercent: number;
  /** Mean percent of one core per command, busiest first. */
  readonly byCommand: { name: string; meanPercent: number }[];
}

/** Folds the sampler's windows into one account of what else ran. */
function summarizeOthers(windows: readonly BusyProcess[][], windowMs: number): OtherLoad {
  const totals = windows.map((list) => list.reduce((sum, p) => sum + p.cpuPercent, 0));
  const byCommand = new Map<string, number>();
  for (const list of windows) {
    for (const p of list) byCommand.set(p.name, (byCommand.get(p.name) ?? 0) + p.cpuPercent);
  }
  const n = Math.max(1, windows.length);
  return {
    windowMs,
    windows: windows.length,
    meanPercent: Math.round(totals.reduce((sum, t) => sum + t, 0) / n),
    maxPercent: Math.max(0, ...totals),
    byCommand: [...byCommand].map(([name, sum]) => ({ name, meanPercent: Math.round(sum / n) }))
      .filter((c) => c.meanPercent >= 1).sort((a, b) => b.meanPercent - a.meanPercent),
  };
}

/**
 * Samples, for the whole run, the CPU used by every process that is not the bench
 * or one of its runs (other people's tests, the broker serving them, the desktop).
 */
export function watchOthers(windowMs: number): { stop(): Promise<OtherLoad> } {
  const child = new Deno.Command(PYTHON, {
    args: [PROCSTAT, "others", String(windowMs), String(Deno.pid)],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const windows: BusyProcess[][] = [];
  const reading = readLines(child.stdout, [], 0, (line) => {
    try {
      windows.push(JSON.parse(line));
    } catch { /* a half line at the kill */ }
  });
  return {
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await reading;
      await child.status;
      return summarizeOthers(windows, windowMs);
    },
  };
}
