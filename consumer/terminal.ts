/**
 * The terminal the consumer draws on: on a terminal, the alternate screen with the
 * cursor hidden while the charts redraw in place (both restored on every way out);
 * otherwise plain lines now and then, for a pipe or a log collector.
 */

import { type ChartData, plainLines, renderFrame } from "./chart.ts";

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

/** The charts, redrawn in place (and on every resize) until the consumer stops. */
export async function showCharts(options: ViewOptions): Promise<unknown> {
  const redraw = () =>
    writeAll(inPlace(renderFrame(options.data(), Deno.consoleSize(), Date.now())));
  writeAll(ENTER_SCREEN);
  Deno.addSignalListener("SIGWINCH", redraw);
  try {
    return await repeat(options, redraw, true);
  } finally {
    Deno.removeSignalListener("SIGWINCH", redraw);
    leaveScreen();
  }
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
