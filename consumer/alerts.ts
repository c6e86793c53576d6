/**
 * Alert evaluation: the rules (lib/alert_rules.ts) against the aggregation, in the
 * consumer, after every applied batch, so alerts fire with no browser open.
 *
 * - Only the symbols a batch touched are evaluated, and only their rules: the cost
 *   of a batch is O(rules of those symbols) (a move rule also reads its window's
 *   candles). A rule sees the symbol's last price (by trade time) after each batch:
 *   a crossing that goes there and back within one batch is not seen. A crossing is
 *   keyed by that price's trade time: each viewer's batches are its own, so each
 *   writes its own record of it (README: several viewers).
 * - Each rule is armed or not. A crossing (the price reaches the level, or the move
 *   reaches its percent) fires an armed rule once and disarms it; the price back on
 *   the other side re-arms it (a move: back under half its percent). A rule is armed
 *   from the price at its last firing or when it was made (a level rule; a rule read
 *   back late, after the trades, so a crossing while down still fires), else from the
 *   symbol's current price when it is set, so the next batch that crosses fires; a
 *   rule set before any price of its symbol takes its state from the first.
 *
 * One clock per rule kind:
 * - Price rules (above, below, move) use trade time only. A crossing at or before a
 *   rule's `from` (the trade time of its symbol's last price when it was set, kept in
 *   the rule as `armedAt`) or its last firing only sets the state. So a replayed
 *   recording, dated in the past, fires as it would have live, and a restarted
 *   consumer that meets history again does not fire twice (the alerts topic gives the
 *   last firings before any trade is read). A rule from ALERTS has no `armedAt`: until
 *   the trade reader has caught up with the topic at start (`goLive`, decided per
 *   batch: consumer/alert_topics.ts batch), its crossings are history; then its
 *   `from` is the trade time of its symbol's last price evaluated as history.
 * - "No trade" rules measure the silence by the wall clock, the clock the market's
 *   hours are in (lib/market_hours.ts): from the later of the session's open and the
 *   wall time the symbol's last trade arrived (any symbol's, with a rule or not;
 *   history read at start: its trade time, so a restart does not restart the
 *   silence). A spell fires once, keyed by trade time: the later of the open, the
 *   last trade's time and the rule's last firing (no trade since that firing is the
 *   same spell, also after a restart); so every viewer keys it alike. Trades that
 *   resume end it, and the next spell fires again. Checked each second
 *   (`checkSilence`), once live.
 * - Held: until the alerts topic has been read to its end (`release`), firings are
 *   held; held ones already on the topic are dropped then, the others fire.
 */

import {
  type AlertRule,
  describeRule,
  type FiredAlert,
  MAX_RULES,
  RuleError,
} from "../lib/alert_rules.ts";
import { formatClock } from "../lib/format.js";
import { type Market, marketOf, sessionOf } from "../lib/market_hours.ts";
import { type Aggregator, DEFAULT_MAX_CANDLES, type SymbolStats } from "./candles.ts";

/** What the engine reads of the aggregation. */
export type AlertPrices = Pick<Aggregator, "stats" | "candles" | "intervals" | "symbols">;

/** Fired alerts kept for the views (the page's list, the terminal's note). */
const RECENT = 50;

interface RuleState {
  rule: AlertRule;
  /** undefined until the rule has seen a price. */
  armed: boolean | undefined;
  /** Trade time: crossings at or before it are history (undefined: all are, not live yet). */
  from: number | undefined;
  /** Trade time of the last price it was judged on: when the prices reach its cutoff. */
  judgedTo: number;
  /** A "no trade" rule: the start of the spell it fired for. */
  spell?: number;
}

interface Judged {
  beyond: boolean;
  back: boolean;
  move: number;
}

export interface AlertEngineOptions {
  readonly prices: AlertPrices;
  /** Called for each alert that fires (write it to the topic, print it). */
  readonly fire: (alert: FiredAlert) => void;
  /** Candles the aggregation keeps per interval (default: the consumer's). */
  readonly maxCandles?: number;
  /** One line for the terminal (default: stderr). */
  readonly warn?: (line: string) => void;
}

export class AlertEngine {
  readonly #options: AlertEngineOptions;
  readonly #bySymbol = new Map<string, Map<string, RuleState>>();
  readonly #byId = new Map<string, RuleState>();
  /** Per rule id, the newest trade time it fired at (from the alerts topic or this run). */
  readonly #lastFired = new Map<string, number>();
  /** Per symbol, when its last trade arrived (wall clock; history: its trade time). */
  readonly #arrived = new Map<string, number>();
  /** Per symbol with rules, the trade time of the last price evaluated before live. */
  readonly #seen = new Map<string, number>();
  readonly #recent: { seq: number; alert: FiredAlert }[] = [];
  /** Firings waiting for the alerts topic to be read (undefined: released). */
  #held: { state: RuleState; alert: FiredAlert }[] | undefined = [];
  #live = false;
  #liveAt = 0;
  #seq = 0;
  /** Firings: fired, silenced (history, or already on the topic), held (topic not read yet). */
  readonly counts = { fired: 0, silenced: 0, held: 0 };

  constructor(options: AlertEngineOptions) {
    this.#options = options;
  }

  /** History read: ALERTS rules count crossings, a rule made now is armed now. */
  get live(): boolean {
    return this.#live;
  }

  /** Adds or replaces a rule; the same rule again keeps its state. */
  setRule(rule: AlertRule): void {
    const known = this.#byId.get(rule.id);
    if (known !== undefined && JSON.stringify(known.rule) === JSON.stringify(rule)) return;
    if (known === undefined && this.#byId.size >= MAX_RULES) {
      throw new RuleError(`at most ${MAX_RULES} rules: delete one first`);
    }
    this.#unlist(rule.id);
    const stats = this.#options.prices.stats(rule.symbol);
    const from = rule.armedAt !== undefined
      ? rule.armedAt ?? -Infinity
      : rule.id.startsWith("cfg:")
      ? (this.#live ? stats?.lastTime ?? -Infinity : undefined)
      : rule.createdAt; // a rule written before armedAt existed (wall time)
    const state: RuleState = { rule, armed: undefined, from, judgedTo: -Infinity };
    // Armed from its cutoff's price (its last firing, or when made: a rule read back
    // late, after trades, must not lose a crossing while the consumer was down), once
    // the prices reach it; else from the current price: the next batch that crosses fires.
    if (stats !== undefined && rule.kind !== "silent") {
      state.armed = this.#armedAtCutoff(state, stats.lastTime) ??
        !this.#judge(rule, stats, new Map()).beyond;
      state.judgedTo = stats.lastTime;
    }
    this.#byId.set(rule.id, state);
    let rules = this.#bySymbol.get(rule.symbol);
    if (rules === undefined) this.#bySymbol.set(rule.symbol, rules = new Map());
    rules.set(rule.id, state);
  }

  /** Deletes a rule and what it fired. */
  removeRule(id: string): boolean {
    this.#lastFired.delete(id);
    return this.#unlist(id);
  }

  #unlist(id: string): boolean {
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

  /** Trade time of the symbol's last price (a new rule's `armedAt`); null: none yet. */
  lastTradeTime(symbol: string): number | null {
    return this.#options.prices.stats(symbol)?.lastTime ?? null;
  }

  /** A firing read back from the alerts topic (this run's own come back too). */
  noteFired(alert: FiredAlert): void {
    const known = this.#lastFired.get(alert.rule.id) ?? -Infinity;
    if (alert.tradeTime > known) this.#lastFired.set(alert.rule.id, alert.tradeTime);
  }

  /**
   * The alerts topic is read to its end: held firings that it does not hold fire
   * now, and the firings of rules that no longer exist are forgotten.
   */
  release(): void {
    for (const id of this.#lastFired.keys()) if (!this.#byId.has(id)) this.#lastFired.delete(id);
    // A deleted (or replaced) rule's held firings are dropped.
    const held = (this.#held ?? []).filter(({ state }) => this.#byId.get(state.rule.id) === state);
    this.#held = undefined;
    for (const { state, alert } of held) {
      if (alert.tradeTime > (this.#lastFired.get(alert.rule.id) ?? -Infinity)) {
        this.#emit(state, alert);
      } else this.counts.silenced++;
    }
  }

  /**
   * The trade reader has caught up with the topic as it was at the start: ALERTS
   * rules count crossings from now on, and the "no trade" rules are checked.
   */
  goLive(now: number = Date.now()): void {
    if (this.#live) return;
    this.#live = true;
    this.#liveAt = now;
    for (const state of this.#byId.values()) {
      const { symbol } = state.rule;
      // From the last price evaluated as history: a batch applied but not evaluated yet is live.
      state.from ??= this.#seen.get(symbol) ?? -Infinity;
      const other = this.otherCase(symbol);
      if (other !== undefined) {
        (this.#options.warn ?? console.error)(
          `warning: alert "${describeRule(state.rule)}": no trade of ${symbol}, but of ${other}:` +
            " symbols are case-sensitive, as the feed sends them",
        );
      }
    }
    this.#seen.clear();
  }

  /** A traded symbol that differs from `symbol` only in case, when `symbol` has no trade. */
  otherCase(symbol: string): string | undefined {
    const symbols = this.#options.prices.symbols();
    if (symbols.includes(symbol)) return undefined;
    return symbols.find((s) => s.toUpperCase() === symbol.toUpperCase());
  }

  /** Fired alerts after `seq` (0: all kept), oldest first, and the newest seq. */
  since(seq: number): { seq: number; alerts: FiredAlert[] } {
    const alerts = this.#recent.filter((entry) => entry.seq > seq).map((entry) => entry.alert);
    return { seq: this.#seq, alerts };
  }

  /** After a batch: the price rules of the symbols it touched. */
  evaluate(symbols: Iterable<string>, now: number = Date.now()): void {
    for (const symbol of symbols) {
      // The silence clock, for every symbol (a "no trade" rule may be set later): when
      // its last trade arrived. History: checkSilence takes its trade time.
      if (this.#live) this.#arrived.set(symbol, now);
      const rules = this.#bySymbol.get(symbol);
      if (rules === undefined) continue;
      const stats = this.#options.prices.stats(symbol, now);
      if (stats === undefined) continue;
      // A window's reference price is read once per symbol, however many rules share it.
      const references = new Map<number, number | undefined>();
      for (const state of rules.values()) {
        const { rule } = state;
        if (rule.kind === "silent") continue;
        // Read back at a restart: the state it had at its last firing (or when made),
        // taken in the batch whose prices reach that moment (history may take many).
        state.armed = this.#armedAtCutoff(state, stats.lastTime) ?? state.armed;
        state.judgedTo = stats.lastTime;
        const judged = this.#judge(rule, stats, references);
        if (!this.#cross(state, judged)) continue;
        const { move } = judged;
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
      if (!this.#live) this.#seen.set(symbol, stats.lastTime);
    }
  }

  /** Where the symbol's last price stands against a price rule. */
  #judge(rule: AlertRule, stats: SymbolStats, references: Map<number, number | undefined>): Judged {
    let reference: number | undefined;
    if (rule.kind === "move") {
      if (!references.has(rule.windowMs)) {
        references.set(
          rule.windowMs,
          this.#priceBefore(rule.symbol, {
            last: stats.lastTime,
            from: stats.lastTime - rule.windowMs,
          }),
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
    return { beyond, back, move };
  }

  /** Each second: the "no trade" rules, during their market's open session only. */
  checkSilence(now: number = Date.now()): void {
    if (!this.#live) return; // the last trades are not known before history is read
    const opens = new Map<Market, number | undefined>();
    for (const state of this.#byId.values()) {
      const { rule } = state;
      if (rule.kind !== "silent") continue;
      const market = marketOf(rule.symbol);
      if (!opens.has(market)) opens.set(market, openedAt(market, now));
      const open = opens.get(market);
      if (open === undefined) continue; // closed
      const stats = this.#options.prices.stats(rule.symbol, now);
      // Elapsed by the wall clock, since the later of the open and the last trade's
      // arrival (history: its trade time); never a trade, around the clock: going live.
      const arrived = this.#arrived.get(rule.symbol) ?? Math.min(now, stats?.lastTime ?? -Infinity);
      const quiet = Math.max(arrived, open);
      if (now - (Number.isFinite(quiet) ? quiet : this.#liveAt) < rule.spanMs) continue;
      // Keyed by trade time, as every viewer and a restart see it: the later of the
      // open and the last trade's time; no trade since the last firing is its spell.
      const key = Math.max(
        open,
        stats?.lastTime ?? -Infinity,
        this.#lastFired.get(rule.id) ?? -Infinity,
      );
      const spell = Number.isFinite(key) ? key : this.#liveAt;
      if (state.spell === spell) continue;
      state.spell = spell;
      const last = stats === undefined
        ? "no trade seen"
        : `last trade ${formatClock(stats.lastTime)}`;
      this.#fire(state, {
        price: stats?.last ?? null,
        tradeTime: spell,
        source: stats?.source ?? null,
      }, { words: `${describeRule(rule)} (${last})`, now });
    }
  }

  /**
   * A level rule's state at its cutoff (its last firing, or when it was made), from
   * the price then (the candles), when the prices judged up to `to` have just reached
   * it: so history still beyond the level when a restarted consumer reads it is no
   * new crossing, however many batches it takes, and a crossing while the consumer
   * was down is one. Undefined (the state moves as before) otherwise.
   */
  #armedAtCutoff(state: RuleState, to: number): boolean | undefined {
    const { rule } = state;
    if (rule.kind !== "above" && rule.kind !== "below") return undefined;
    const cutoff = Math.max(this.#lastFired.get(rule.id) ?? -Infinity, state.from ?? -Infinity);
    if (!Number.isFinite(cutoff) || state.judgedTo >= cutoff || to < cutoff) return undefined;
    for (const interval of [...this.#options.prices.intervals()].sort((a, b) => a - b)) {
      const near = this.#options.prices.candles(rule.symbol, interval, cutoff - 60 * interval);
      const then = near.findLast((candle) => candle.start <= cutoff);
      if (then === undefined) continue;
      return rule.kind === "above" ? then.close < rule.level : then.close > rule.level;
    }
    return undefined;
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

  /**
   * The first price at or after `from` (trade time), in the finest candles that
   * still reach back to it: the 1 s ones keep `maxCandles` seconds (an hour), so a
   * longer window is read from the 1 m ones (to the minute).
   */
  #priceBefore(symbol: string, at: { last: number; from: number }): number | undefined {
    const { prices, maxCandles = DEFAULT_MAX_CANDLES } = this.#options;
    const intervals = [...prices.intervals()].sort((a, b) => a - b);
    const interval =
      intervals.find((ms) => (Math.floor(at.last / ms) - maxCandles + 1) * ms <= at.from - ms) ??
        intervals.at(-1)!;
    return prices.candles(symbol, interval, at.from - interval)[0]?.open;
  }

  #fire(
    state: RuleState,
    at: Pick<FiredAlert, "price" | "tradeTime" | "source">,
    how: { words: string; now: number },
  ): void {
    const { rule } = state;
    const lastFired = this.#lastFired.get(rule.id) ?? -Infinity;
    // History already fired (a silence: the same spell), or from before the rule; an
    // ALERTS rule before live: history, unless after its last firing.
    const cutoff = rule.kind === "silent"
      ? lastFired
      : state.from !== undefined
      ? Math.max(lastFired, state.from)
      : lastFired > -Infinity
      ? lastFired
      : Infinity;
    if (at.tradeTime <= cutoff) {
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
    if (this.#held !== undefined) {
      this.counts.held++;
      this.#held.push({ state, alert });
      if (this.#held.length > RECENT * 20) this.#held.shift(); // a topic never read: bounded
      return;
    }
    this.#emit(state, alert);
  }

  #emit(state: RuleState, alert: FiredAlert): void {
    this.#lastFired.set(state.rule.id, alert.tradeTime);
    this.#recent.push({ seq: ++this.#seq, alert });
    if (this.#recent.length > RECENT) this.#recent.shift();
    this.counts.fired++;
    this.#options.fire(alert);
  }
}

/** When the market's current session opened; -Infinity around the clock; undefined: closed. */
export function openedAt(market: Market, now: number): number | undefined {
  const session = sessionOf(market, now);
  if (session === undefined || session.next === undefined) return -Infinity;
  if (!session.open) return undefined;
  // A moment before it when the market was closed: its next opening is this session's.
  for (const back of [7 * 3600_000, 1, 2, 3, 4, 5, 6, 7].map((d) => d < 100 ? d * 86_400_000 : d)) {
    const before = sessionOf(market, now - back)!;
    if (!before.open && before.next! <= now) return before.next!;
  }
  return -Infinity;
}
