/**
 * The terminal the consumer draws on: on a terminal, the alternate screen with the
 * cursor hidden while the charts redraw in place (both restored on every way out);
 * otherwise plain lines now and then, for a pipe or a log collector.
 */

import { type ChartData, renderFrame, stepInterval } from "./chart.ts";
import { plainLines } from "./plain.ts";

const encoder = new TextEncoder();

/** Writes all of `text` to stdout (a short write is continued, not dropped). */
function writeAll(text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

const ENTER_SCREEN = "\x1b[?1049h\x1b[?25l";
const LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l";

/** Redraws in place: home, each line then clear-to-end-of-line, then clear below. */
function inPlace(frame: string): string {
  return "\x1b[H" + frame.replaceAll("\n", "\x1b[K\n") + "\x1b[K\x1b[J";
}

/** Leaves the alternate screen and shows the cursor (also on the way out of a forced stop). */
export function leaveScreen(): void {
  writeAll(LEAVE_SCREEN);
}

export interface ViewOptions {
  /** The chart data, read at each redraw. */
  readonly data: () => ChartData;
  readonly everyMs: number;
  /** Settles when the consumer has stopped. */
  readonly done: Promise<void>;
  /** Stops the consumer (a drawing error, say a closed pipe, ends the run). */
  readonly stop: () => void;
}

/**
 * Calls `draw` every `everyMs` (and at once with `now`) until `done` settles. A draw
 * that throws stops the consumer; the first such error is returned (timer callbacks
 * must not throw, or a closed pipe would end the process uncleanly).
 */
async function repeat(options: ViewOptions, draw: () => void, now = false): Promise<unknown> {
  let failure: unknown;
  const guarded = () => {
    try {
      draw();
    } catch (error) {
      failure ??= error;
      options.stop();
    }
  };
  if (now) guarded();
  const timer = setInterval(guarded, options.everyMs);
  try {
    await options.done;
  } finally {
    clearInterval(timer);
  }
  return failure;
}

/**
 * The charts, redrawn in place (and on every resize) until the consumer stops. When
 * stdin is a terminal too, keys page through the symbols and change the interval
 * (chart.ts draws the hint); stdin is in cbreak mode then, so Ctrl+C still stops.
 */
export async function showCharts(options: ViewOptions): Promise<unknown> {
  const keys = Deno.stdin.isTerminal() ? { page: 0, intervalMs: 0 } : undefined;
  const frameData = (): ChartData => {
    const data = options.data();
    if (keys === undefined) return data;
    keys.intervalMs ||= data.intervalMs;
    return { ...data, intervalMs: keys.intervalMs, paging: { page: keys.page } };
  };
  const redraw = () => writeAll(inPlace(renderFrame(frameData(), Deno.consoleSize(), Date.now())));
  writeAll(ENTER_SCREEN);
  Deno.addSignalListener("SIGWINCH", redraw);
  let reading: ReturnType<typeof readKeys> | undefined;
  try {
    // Inside the try: a terminal that refuses raw mode still gets its screen back.
    reading = keys === undefined ? undefined : readKeys((key) => {
      if (key === "quit") return options.stop();
      if (key === "next" || key === "previous") keys.page += key === "next" ? 1 : -1;
      else keys.intervalMs = stepInterval(keys.intervalMs, key === "longer" ? 1 : -1);
      redraw();
    });
    return await repeat(options, redraw, true);
  } finally {
    await reading?.stop();
    Deno.removeSignalListener("SIGWINCH", redraw);
    leaveScreen();
  }
}

export type Key = "next" | "previous" | "longer" | "shorter" | "quit";

const KEYS: [string, Key][] = [
  ["\x1b[6~", "next"], // Page Down
  ["\x1b[5~", "previous"], // Page Up
  ["\x1b[C", "next"], // →
  ["\x1b[D", "previous"], // ←
  ["\x1b[B", "next"], // ↓
  ["\x1b[A", "previous"], // ↑
  [" ", "next"],
  ["n", "next"],
  ["p", "previous"],
  ["+", "longer"],
  ["=", "longer"],
  ["i", "longer"],
  ["-", "shorter"],
  ["I", "shorter"],
  ["q", "quit"],
];

/** The keys in what one read of stdin gave; anything else is skipped. */
export function parseKeys(text: string): Key[] {
  const out: Key[] = [];
  let i = 0;
  while (i < text.length) {
    const match = KEYS.find(([sequence]) => text.startsWith(sequence, i));
    if (match !== undefined) {
      out.push(match[1]);
      i += match[0].length;
    } else if (text[i] === "\x1b" && text[i + 1] === "[") {
      // An escape sequence of a key we do not use: skip to its final byte.
      i += 2;
      while (i < text.length && !/[A-Za-z~]/.test(text[i])) i++;
      i++;
    } else {
      i++;
    }
  }
  return out;
}

/** Reads keys from stdin in cbreak mode until stopped; the mode is restored on stop. */
function readKeys(onKey: (key: Key) => void): { stop: () => Promise<void> } {
  Deno.stdin.setRaw(true, { cbreak: true });
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  const loop = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const key of parseKeys(decoder.decode(value, { stream: true }))) onKey(key);
    }
  })().catch(() => {});
  return {
    stop: async () => {
      await reader.cancel().catch(() => {});
      await loop;
      Deno.stdin.setRaw(false);
    },
  };
}

/** Plain key=value lines every `everyMs`, and once more at the end. */
export async function showLines(options: ViewOptions): Promise<unknown> {
  const print = () => writeAll(plainLines(options.data(), Date.now()).join("\n") + "\n");
  const failure = await repeat(options, print);
  if (failure !== undefined) return failure;
  try {
    print();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Only the consumer's own line, every `everyMs` (the dashboard's console). */
export function showStatus(options: ViewOptions): Promise<unknown> {
  return repeat(options, () => writeAll(plainLines(options.data(), Date.now())[0] + "\n"));
}
