/**
 * The command line, one way for every script: flags declared as a table and parsed
 * by the platform (`node:util` parseArgs, strict), the value rules flags share, one
 * error type for a mistake the user can fix, and the one place where an error
 * becomes a line on stderr and an exit code. The scripts' `main` returns that code;
 * only the entry line of a script exits.
 */

import { parseArgs } from "node:util";
import { redact } from "./redact.ts";

/** A mistake the user can fix (a flag, a variable, a permission): one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One flag: a value (`--name=V` or `--name V`) or a switch (`--name`). */
export type FlagSpec = { readonly type: "string" } | { readonly type: "boolean" };

type Values<S extends Record<string, FlagSpec>> = {
  [K in keyof S]?: S[K] extends { type: "boolean" } ? boolean : string;
};

/** Node's parseArgs messages, in our one wording. */
function reword(error: { code?: string; message: string }): string {
  const flag = /'(-{1,2}[^' <]+)/.exec(error.message)?.[1] ?? "";
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag} (see --help)`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument "${/'([^']*)'/.exec(error.message)?.[1]}" (see --help)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /does not take/.test(error.message)
        ? `${flag} takes no value`
        : `${flag} needs a value (see --help)`;
    default:
      return error.message;
  }
}

/**
 * Parses `args` against `spec`: unknown flags, positionals, a missing value and a
 * flag given twice are each a UsageError. Every value is still text; the script
 * checks it with the rules below.
 */
export function parseFlags<S extends Record<string, FlagSpec>>(
  args: readonly string[],
  spec: S,
): Values<S> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: spec, strict: true, tokens: true });
  } catch (error) {
    throw new UsageError(reword(error as { code?: string; message: string }));
  }
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== "option") continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given twice`);
    seen.add(token.name);
  }
  return { ...parsed.values } as Values<S>;
}

/** A number > 0 (or >= 0 with `allowZero`), whole with `integer`. */
export function positive(
  flag: string,
  text: string,
  rule: { integer?: boolean; allowZero?: boolean } = {},
): number {
  const number = Number(text);
  const ok = (rule.integer ? /^\d{1,15}$/.test(text) : text.trim() !== "") &&
    Number.isFinite(number) &&
    (rule.allowZero ? number >= 0 : number > 0) &&
    (!rule.integer || Number.isSafeInteger(number));
  if (!ok) {
    const kind = rule.integer ? "whole number" : "number";
    throw new UsageError(
      `--${flag}: "${text}" is not a ${rule.allowZero ? "" : "positive "}${kind}`,
    );
  }
  return number;
}

/**
 * A duration as people write it in a flag or a URL: `1500` (ms), `500ms`, `30s`,
 * `5m`, `1h`. Undefined for anything else.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})(ms|s|m|h)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[match[2] ?? "ms"] ?? 1;
  return Number(match[1]) * unit;
}

/** A point in time: ms since the epoch, or an ISO time (`2026-01-05T14:30:00Z`). */
export function parseTime(text: string): number | undefined {
  if (/^\d{1,15}$/.test(text)) return Number(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The exit code for an error that ends a script, after its one line on stderr
 * (secrets redacted): 2 for a UsageError (and ConfigError, one of them), 1 for
 * anything else. Never a stack trace.
 */
export function exitCodeFor(error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`error: ${redact(message)}`);
  return error instanceof UsageError ? 2 : 1;
}

/** How far apart two signals must be to mean "quit now" rather than one Ctrl-C seen twice. */
const ECHO_MS = 1_000;

/**
 * The process's one stop signal, aborted by the first SIGINT or SIGTERM (docker stop
 * sends SIGTERM). A wrapper (`deno task`, `timeout`) may pass on the same Ctrl-C the
 * process got itself: a signal within a second of the first is that echo and is
 * ignored; a later one means "quit now" and calls `onForce`, which the entry point
 * words and exits on. Dispose to remove the listeners.
 */
export function stopOnSignals(onForce: () => void): Disposable & { readonly signal: AbortSignal } {
  const controller = new AbortController();
  let firstAt = 0;
  const onSignal = () => {
    if (firstAt === 0) {
      firstAt = Date.now();
      controller.abort();
    } else if (Date.now() - firstAt >= ECHO_MS) onForce();
  };
  const signals: Deno.Signal[] = [];
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(name, onSignal);
      signals.push(name);
    } catch { /* SIGTERM does not exist on Windows */ }
  }
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const name of signals) Deno.removeSignalListener(name, onSignal);
    },
  };
}
