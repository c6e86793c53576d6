/**
 * Alert evaluation: the rules (lib/alert_rules.ts) against the aggregation, in the
 * consumer, after every applied batch, so alerts fire with no browser open.
 *
 * - Only the symbols a batch touched are evaluated, and only their rules: the cost
 *   of a batch is O(rules of those symbols) (a move rule also reads its window's
 *   candles). A rule sees the symbol's last price (by trade time) after each batch:
 *   a crossing that goes there and back within one batch is not seen.
 * - Each rule is armed or not. A crossing (the price reaches the level, or the move
 *   reaches its percent) fires an armed rule once and disarms it; the price back on
 *   the other side re-arms it (a move: back under half its percent). A rule's first price only sets its state: a rule made
 *   while the price is already beyond the level waits for a crossing.
 * - No firing twice across a restart: a restarted consumer rebuilds its aggregation
 *   from Kafka's history and meets the old crossings again. Before it reads trades
 *   it reads the alerts topic, and keeps each rule's newest fired trade time; a
 *   crossing at or before that time (or before the rule was made; a rule from
 *   ALERTS that never fired: before this process started) only sets the armed
 *   state. So history is evaluated silently up to the last firing, and a crossing
 *   after it (even one that happened while the consumer was down) fires.
 * - "No trade" rules are checked each second by the clock (`checkSilence`), and
 *   only while the symbol's market is open (lib/market_hours.ts): the silence counts
 *   from the last trade or from the open, whichever is later. A trade re-arms them.
 */

import {
  type AlertRule,
  describeRule,
  type FiredAlert,
  MAX_RULES,
  RuleError,
} from "../lib/alert_rules.ts";
import { formatClock } from "../lib/format.js";
import { marketOf, sessionOf } from "../lib/market_hours.ts";
import type { Aggregator } from "./candles.ts";

/** What the engine reads of the aggregation. */
export type AlertPrices = Pick<Aggregator, "stats" | "candles" | "intervals">;

/** Fired alerts kept for the views (the page's list, the terminal's note). */
const RECENT = 50;

interface RuleState {
  rule: AlertRule;
  /** undefined until the rule has seen a price. */
  armed: boolean | undefined;
  /** When the market was last seen opening (silence rules). */
  openSince?: number;
}

export interface AlertEngineOptions {
  readonly prices: AlertPrices;
  /** Called for each alert that fires (write it to the topic, print it). */
  readonly fire: (alert: FiredAlert) => void;
  /** This process's start: crossings of a never-fired ALERTS rule before it are history. */
  readonly startedAt: number;
}

export class AlertEngine {
  readonly #options: AlertEngineOptions;
  readonly #bySymbol = new Map<string, Map<string, RuleState>>();
  readonly #byId = new Map<string, RuleState>();
  /** Per rule id, the newest trade time it fired at (from the alerts topic or this run). */
  readonly #lastFired = new Map<string, number>();
  readonly #recent: { seq: number; alert: FiredAlert }[] = [];
  #seq = 0;
  /** Evaluations and rules looked at, for the bench and /metrics. */
  readonly counts = { fired: 0, silenced: 0 };

  constructor(options: AlertEngineOptions) {
    this.#options = options;
  }

  /** Adds or replaces a rule; the same rule again keeps its state. */
  setRule(rule: AlertRule): void {
    const known = this.#byId.get(rule.id);
    if (known !== undefined && JSON.stringify(known.rule) === JSON.stringify(rule)) return;
    if (known === undefined && this.#byId.size >= MAX_RULES) {
      throw new RuleError(`at most ${MAX_RULES} rules: delete one first`);
    }
    this.removeRule(rule.id);
    const state: RuleState = { rule, armed: undefined };
    this.#byId.set(rule.id, state);
    let rules = this.#bySymbol.get(rule.symbol);
    if (rules === undefined) this.#bySymbol.set(rule.symbol, rules = new Map());
    rules.set(rule.id, state);
  }

  removeRule(id: string): boolean {
    const state = this.#byId.get(id);
    if (state === undefined) return false;
    this.#byId.delete(id);
    const rules = this.#bySymbol.get(state.rule.symbol)!;
    rules.delete(id);
    if (rules.size === 0) this.#bySymbol.delete(state.rule.symbol);
    return true;
  }

  rules(): AlertRule[] {
    return [...this.#byId.values()].map((state) => state.rule);
  }

  /** A firing read back from the alerts topic (this run's own come back too). */
  noteFired(alert: FiredAlert): void {
    const known = this.#lastFired.get(alert.rule.id) ?? -Infinity;
    if (alert.tradeTime > known) this.#lastFired.set(alert.rule.id, alert.tradeTime);
  }

  /** Fired alerts after `seq` (0: all kept), oldest first, and the newest seq. */
  since(seq: number): { seq: number; alerts: FiredAlert[] } {
    const alerts = this.#recent.filter((entry) => entry.seq > seq).map((entry) => entry.alert);
    return { seq: this.#seq, alerts };
  }

  /** After a batch: the price rules of the symbols it touched. */
  evaluate(symbols: Iterable<string>, now: number = Date.now()): void {
    for (const symbol of symbols) {
      const rules = this.#bySymbol.get(symbol);
      if (rules === undefined) continue;
      const stats = this.#options.prices.stats(symbol, now);
      if (stats === undefined) continue;
      // A window's reference price is read once per symbol, however many rules share it.
      const references = new Map<number, number | undefined>();
      for (const state of rules.values()) {
        const { rule } = state;
        if (rule.kind === "silent") continue;
        let reference: number | undefined;
        if (rule.kind === "move") {
          if (!references.has(rule.windowMs)) {
            references.set(
              rule.windowMs,
              this.#priceBefore(symbol, stats.lastTime - rule.windowMs),
            );
          }
          reference = references.get(rule.windowMs);
        }
        const move = reference === undefined ? 0 : (stats.last - reference) / reference * 100;
        const beyond = rule.kind === "above"
          ? stats.last >= rule.level
          : rule.kind === "below"
          ? stats.last <= rule.level
          : rule.kind === "move" && reference !== undefined && Math.abs(move) >= rule.percent;
        // A move re-arms only under half its percent: a price hovering at the threshold
        // would otherwise fire on every other batch.
        const back = rule.kind === "move" ? Math.abs(move) < rule.percent / 2 : !beyond;
        if (!this.#cross(state, { beyond, back })) continue;
        const words = rule.kind === "move"
          ? `${symbol} moved ${move > 0 ? "+" : ""}${move.toFixed(2)} % within ${
            describeRule(rule).split(" within ")[1]
          } (to ${stats.last})`
          : `${symbol} crossed ${rule.kind} ${rule.level} at ${stats.last}`;
        this.#fire(state, { price: stats.last, tradeTime: stats.lastTime, source: stats.source }, {
          words,
          now,
        });
      }
    }
  }

  /** Each second: the "no trade" rules, during their market's open session only. */
  checkSilence(now: number = Date.now()): void {
    for (const state of this.#byId.values()) {
      const { rule } = state;
      if (rule.kind !== "silent") continue;
      const open = sessionOf(marketOf(rule.symbol), now)?.open ?? true;
      if (!open) {
        state.openSince = undefined;
        continue;
      }
      state.openSince ??= now;
      const stats = this.#options.prices.stats(rule.symbol, now);
      const quietSince = Math.max(stats?.lastTime ?? -Infinity, state.openSince);
      const beyond = now - quietSince >= rule.spanMs;
      if (!this.#cross(state, { beyond, back: !beyond })) continue;
      const last = stats === undefined
        ? "no trade seen"
        : `last trade ${formatClock(stats.lastTime)}`;
      this.#fire(state, {
        price: stats?.last ?? null,
        tradeTime: stats?.lastTime ?? state.openSince,
        source: stats?.source ?? null,
      }, { words: `${describeRule(rule)} (${last})`, now, silence: true });
    }
  }

  /** Moves the armed state; true when an armed rule crossed (it is disarmed now). */
  #cross(state: RuleState, where: { beyond: boolean; back: boolean }): boolean {
    const { beyond, back } = where;
    if (state.armed === undefined) {
      state.armed = !beyond;
      return false;
    }
    if (state.armed && beyond) {
      state.armed = false;
      return true;
    }
    if (!state.armed && back) state.armed = true;
    return false;
  }

  /** The first price at or after `from` (trade time) in the finest candles. */
  #priceBefore(symbol: string, from: number): number | undefined {
    const finest = Math.min(...this.#options.prices.intervals());
    const candles = this.#options.prices.candles(symbol, finest, from - finest);
    return candles[0]?.open;
  }

  #fire(
    state: RuleState,
    at: Pick<FiredAlert, "price" | "tradeTime" | "source">,
    how: { words: string; now: number; silence?: boolean },
  ): void {
    const { rule } = state;
    const lastFired = this.#lastFired.get(rule.id);
    // History already fired (or from before the rule): set the state, fire nothing.
    const before = how.silence
      ? lastFired ?? -Infinity
      : Math.max(lastFired ?? -Infinity, rule.createdAt || (lastFired ?? this.#options.startedAt));
    if (at.tradeTime <= before) {
      this.counts.silenced++;
      return;
    }
    const alert: FiredAlert = {
      rule,
      symbol: rule.symbol,
      ...at,
      firedAt: how.now,
      words: how.words,
    };
    this.#lastFired.set(rule.id, at.tradeTime);
    this.#recent.push({ seq: ++this.#seq, alert });
    if (this.#recent.length > RECENT) this.#recent.shift();
    this.counts.fired++;
    this.#options.fire(alert);
  }
}
