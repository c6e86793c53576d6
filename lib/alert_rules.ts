/**
 * Alert rules and fired alerts as both the consumer and the dashboard know them:
 * the shapes, the small grammar of the ALERTS variable, and the checks a rule from
 * the page (or read back from Kafka) must pass. Pure: no I/O.
 *
 * Three kinds:
 * - `AAPL>190`, `AAPL<185`: the price crosses a level upwards (above) or downwards
 *   (below). Fires once per crossing; re-arms once the price is back on the other side.
 * - `BINANCE:BTCUSDT~2%/5m`: the price moved at least 2 % (up or down) from its
 *   price 5 minutes before, by trade time. Re-arms once the move is back under 1 %
 *   (half its percent: a price hovering at 2 % does not fire on every batch).
 * - `MSFT!10m`: no trade for 10 minutes while the symbol's market is open
 *   (lib/market_hours.ts; hours unknown count as open). Once per silent spell.
 * Symbols are case-sensitive, as the trades' (lib/trade.ts checkSymbol).
 *
 * The topics: `<topic>.alert-rules` (compacted; key = rule id, value = rule JSON, a
 * tombstone deletes) and `<topic>.alerts` (key = alertKey: rule id @ trade time, value =
 * fired-alert JSON).
 */

import { parseDuration } from "./cli.ts";
import { checkSymbol, isRecord, MAX_SYMBOL_LENGTH, type Source } from "./trade.ts";

export type AlertRule = Readonly<
  & {
    id: string;
    /** Case-sensitive, as the feed sends it (lib/trade.ts): `aapl` is not AAPL. */
    symbol: string;
    /** Wall time the rule was made (0: from ALERTS). */
    createdAt: number;
    /**
     * Trade time of the symbol's last price when the rule was made (null: none yet);
     * crossings at or before it are history (consumer/alerts.ts). Absent: ALERTS.
     */
    armedAt?: number | null;
  }
  & (
    | { kind: "above" | "below"; level: number }
    | { kind: "move"; percent: number; windowMs: number }
    | { kind: "silent"; spanMs: number }
  )
>;
export type AlertKind = AlertRule["kind"];
export const ALERT_KINDS: readonly AlertKind[] = ["above", "below", "move", "silent"];

/** A rule that fired: the record on the alerts topic, and what the page shows. */
export interface FiredAlert {
  readonly rule: AlertRule;
  readonly symbol: string;
  /** The price that crossed (the last price, for a silence; null: none seen). */
  readonly price: number | null;
  /**
   * Trade time of that price, ms; for a "no trade" rule, the silent spell's start: the
   * later of the session's open, its last trade's time and the rule's last firing
   * (when this consumer went live, for a symbol never traded around the clock). With
   * the rule id, the record's key.
   */
  readonly tradeTime: number;
  /** Wall time when the consumer fired it, ms. */
  readonly firedAt: number;
  /** Where the trades came from: "sim" and "replay" are not the market. */
  readonly source: Source | null;
  /** "AAPL crossed above 190 at 190.05". */
  readonly words: string;
}

export const MAX_RULES = 1_000;
const MAX_ID_LENGTH = 80;
const MIN_SPAN_MS = 1_000;
const MAX_SPAN_MS = 24 * 3600_000;

export const alertRulesTopicOf = (topic: string): string => `${topic}.alert-rules`;
export const alertsTopicOf = (topic: string): string => `${topic}.alerts`;

/** Both alert topics: one partition each (every viewer reads all of them). */
export const ALERT_RULES_TOPIC_CONFIG: readonly { name: string; value: string }[] = Object.freeze([
  { name: "cleanup.policy", value: "compact" },
]);
export const ALERTS_TOPIC_CONFIG: readonly { name: string; value: string }[] = Object.freeze([
  // A "no trade" spell has one key in every viewer: compaction keeps one (README: several viewers).
  { name: "cleanup.policy", value: "compact,delete" },
  { name: "retention.ms", value: String(7 * 24 * 3600_000) },
]);

/**
 * A firing's record key: its rule id and trade time. A "no trade" spell's is the same
 * in every viewer; a price crossing's is its batch's last trade time, so each viewer
 * writes its own record of it (its batches are its own).
 */
export const alertKey = (alert: Pick<FiredAlert, "rule" | "tradeTime">): string =>
  `${alert.rule.id}@${alert.tradeTime}`;

/** A rule the grammar or the checks refused: one line saying why. */
export class RuleError extends Error {
  override name = "RuleError";
}

const SPEC = /^(.+?)\s*([<>~!])\s*(.+)$/;

/**
 * One rule of the ALERTS grammar: `AAPL>190`, `AAPL<185`, `BINANCE:BTCUSDT~2%/5m`,
 * `MSFT!10m`. Its id is `cfg:` and the text, so a restart knows it again.
 */
export function parseAlertSpec(text: string): AlertRule {
  const spec = text.trim();
  const match = SPEC.exec(spec);
  if (match === null) {
    throw new RuleError(
      `"${spec}" is not a rule: SYMBOL>LEVEL, SYMBOL<LEVEL, SYMBOL~PERCENT%/WINDOW or SYMBOL!SPAN`,
    );
  }
  const [, symbol, op, rest] = match;
  const base = { id: `cfg:${symbol}${op}${rest}`, symbol, createdAt: 0 };
  if (op === ">" || op === "<") {
    return checkRule({ ...base, kind: op === ">" ? "above" : "below", level: Number(rest) });
  }
  if (op === "!") return checkRule({ ...base, kind: "silent", spanMs: duration(rest, spec) });
  const move = /^([0-9.]+)\s*%\s*\/\s*(\S+)$/.exec(rest);
  if (move === null) {
    throw new RuleError(`"${spec}": a move is SYMBOL~PERCENT%/WINDOW (AAPL~2%/5m)`);
  }
  return checkRule({
    ...base,
    kind: "move",
    percent: Number(move[1]),
    windowMs: duration(move[2], spec),
  });
}

function duration(raw: string, spec: string): number {
  const ms = parseDuration(raw.trim());
  if (ms === undefined) throw new RuleError(`"${spec}": "${raw}" is not a duration (10m, 30s)`);
  return ms;
}

/** The rules of ALERTS: comma-separated (symbols have no commas). */
export function parseAlertSpecs(text: string): AlertRule[] {
  const rules = text.split(",").map((item) => item.trim()).filter((item) => item !== "")
    .map(parseAlertSpec);
  if (rules.length > MAX_RULES) throw new RuleError(`at most ${MAX_RULES} rules`);
  if (new Set(rules.map((rule) => rule.id)).size !== rules.length) {
    throw new RuleError("names a rule twice");
  }
  return rules;
}

/** Checks the numbers of a rule; the rule, or a RuleError naming the field. */
export function checkRule(rule: AlertRule): AlertRule {
  if (rule.id === "" || rule.id.length > MAX_ID_LENGTH) {
    throw new RuleError(`id: 1 to ${MAX_ID_LENGTH} characters`);
  }
  if (rule.symbol === "" || rule.symbol.length > MAX_SYMBOL_LENGTH) {
    throw new RuleError(`symbol: 1 to ${MAX_SYMBOL_LENGTH} characters`);
  }
  // The trades' own rule (no C0 or C1 control character: a symbol reaches terminals),
  // and no comma (ALERTS separates rules by commas). Quoted as JSON: never raw.
  if (!checkSymbol(rule.symbol) || rule.symbol.includes(",")) {
    // JSON leaves C1 controls (U+0080-U+009F) as they are: escape every control.
    const quoted = JSON.stringify(rule.symbol)
      .replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    throw new RuleError(`symbol: ${quoted} has a comma, a control character or spaces at an end`);
  }
  switch (rule.kind) {
    case "above":
    case "below":
      if (!Number.isFinite(rule.level) || rule.level <= 0) {
        throw new RuleError(`level: a price above 0, not ${rule.level}`);
      }
      break;
    case "move":
      if (!Number.isFinite(rule.percent) || rule.percent <= 0 || rule.percent > 1000) {
        throw new RuleError(`percent: a number above 0 and at most 1000, not ${rule.percent}`);
      }
      checkSpan("windowMs", rule.windowMs);
      break;
    case "silent":
      checkSpan("spanMs", rule.spanMs);
      break;
  }
  return Object.freeze(rule);
}

function checkSpan(field: string, ms: number): void {
  if (!Number.isInteger(ms) || ms < MIN_SPAN_MS || ms > MAX_SPAN_MS) {
    throw new RuleError(`${field}: a span from 1 s to 24 h in ms, not ${ms}`);
  }
}

const FIELDS: Record<AlertKind, readonly string[]> = {
  above: ["level"],
  below: ["level"],
  move: ["percent", "windowMs"],
  silent: ["spanMs"],
};

/**
 * A rule from JSON (the page's POST, or the rules topic): exactly the fields of its
 * kind, checked. Throws a RuleError naming the first mistake.
 */
export function ruleFromJson(value: unknown): AlertRule {
  if (!isRecord(value)) throw new RuleError("the body is not a JSON object");
  const kind = value.kind;
  if (typeof kind !== "string" || !ALERT_KINDS.includes(kind as AlertKind)) {
    throw new RuleError(`kind: one of ${ALERT_KINDS.join(", ")}`);
  }
  const allowed = new Set([
    "id",
    "symbol",
    "kind",
    "createdAt",
    "armedAt",
    ...FIELDS[kind as AlertKind],
  ]);
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) throw new RuleError(`${key}: not a field of a ${kind} rule`);
  }
  const { id, symbol, createdAt, armedAt } = value;
  if (armedAt !== undefined && armedAt !== null && !Number.isFinite(armedAt)) {
    throw new RuleError("armedAt: a trade time in ms, or null");
  }
  if (typeof id !== "string") throw new RuleError("id: a string");
  if (typeof symbol !== "string") throw new RuleError("symbol: a string");
  if (typeof createdAt !== "number" || !Number.isFinite(createdAt)) {
    throw new RuleError("createdAt: ms since the epoch");
  }
  for (const field of FIELDS[kind as AlertKind]) {
    if (typeof value[field] !== "number") throw new RuleError(`${field}: a number`);
  }
  return checkRule({ ...value } as unknown as AlertRule);
}

/** "AAPL above 190", "BINANCE:BTCUSDT moves 2 % in 5m", "MSFT no trade for 10m". */
export function describeRule(rule: AlertRule): string {
  const span = (ms: number) => ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`;
  switch (rule.kind) {
    case "above":
    case "below":
      return `${rule.symbol} crosses ${rule.kind} ${rule.level}`;
    case "move":
      return `${rule.symbol} moves ${rule.percent} % within ${span(rule.windowMs)}`;
    case "silent":
      return `${rule.symbol} no trade for ${span(rule.spanMs)} in trading hours`;
  }
}

/** A fired alert read back from the alerts topic; null when it is not one. */
export function firedFromJson(text: string): FiredAlert | null {
  try {
    const value = JSON.parse(text);
    if (!isRecord(value) || typeof value.tradeTime !== "number") return null;
    return { ...value, rule: ruleFromJson(value.rule) } as unknown as FiredAlert;
  } catch {
    return null;
  }
}
