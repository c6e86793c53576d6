/**
 * The alert topics, read and written by the consumer:
 * - `<topic>.alert-rules` (compacted, one partition): key = rule id, value = the rule
 *   as JSON, a tombstone (null value) deletes it. The dashboard writes it (POST and
 *   DELETE /api/alerts); every dashboard reads it from the beginning on start, so the
 *   rules survive a restart. A record whose key is not its rule's id is refused and
 *   counted. `deno task consume` (no server) takes its rules from ALERTS only.
 * - `<topic>.alerts` (one partition, a week, compacted): key = rule id and crossing
 *   trade time (lib/alert_rules.ts alertKey), value = the fired alert as JSON
 *   (FiredAlert), readable by any tool (kcat). Several viewers on one topic each
 *   write their firings: a "no trade" spell under one key, a price crossing under
 *   each viewer's own (its batch's last trade time). Every viewer reads it from the
 *   beginning too: each rule's newest firing is what keeps a restarted consumer from
 *   firing again for history (consumer/alerts.ts).
 *
 * Both are read with lib/kafka.ts readFromStart (a private group, nothing
 * committed). Until both are read up to their end offsets as they were at the start,
 * the engine holds its firings. `loaded` resolves then, or after LOAD_MS with one
 * line saying firings stay held until the topics are read (never duplicates).
 */
import { Partitioners } from "kafkajs";
import type { Admin, KafkaMessage } from "kafkajs";
import type { Config } from "../config.ts";
import {
  ALERT_RULES_TOPIC_CONFIG,
  alertKey,
  type AlertRule,
  alertRulesTopicOf,
  ALERTS_TOPIC_CONFIG,
  alertsTopicOf,
  type FiredAlert,
  firedFromJson,
  ruleFromJson,
} from "../lib/alert_rules.ts";
import { createKafka, ensureTopic, readFromStart } from "../lib/kafka.ts";
import { AlertEngine, type AlertPrices } from "./alerts.ts";

const LOAD_MS = 15_000;
const LEAVE_MS = 1_500;

export interface AlertTopics {
  /** Both topics read to where they ended at the start, or LOAD_MS passed. */
  readonly loaded: Promise<void>;
  /** Writes a fired alert; a failure is one warning line (the alert still shows). */
  publish(alert: FiredAlert): void;
  /** Writes a rule (the dashboard's POST); resolves once Kafka has it. */
  putRule(rule: AlertRule): Promise<void>;
  /** Writes a rule's tombstone. */
  deleteRule(id: string): Promise<void>;
  /** Resolves after the signal aborts, once the reader and writer have left. */
  readonly stopped: Promise<void>;
}

export function startAlertTopics(options: {
  readonly config: Config;
  readonly engine: AlertEngine;
  readonly signal: AbortSignal;
  /** Read the rules topic (the dashboard); else rules come from ALERTS only. */
  readonly readRules: boolean;
  /** How long `loaded` waits (default 15 s). */
  readonly loadMs?: number;
}): AlertTopics {
  const { config, engine, signal, readRules } = options;
  const alertsTopic = alertsTopicOf(config.topic);
  const topics = readRules ? [alertsTopic, alertRulesTopicOf(config.topic)] : [alertsTopic];
  const kafka = createKafka(config, "alerts");
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const load = trackLoad({ engine, topics, signal, loadMs: options.loadMs ?? LOAD_MS });
  const apply = recordApplier(engine, alertsTopic);
  const { started, stopped } = readFromStart({
    kafka,
    topics,
    group: `${config.groupId}.alerts`,
    signal,
    prepare: (admin) => prepareTopics(admin, { config, topics, load }),
    onMessage: (topic, message, partition) => {
      apply(topic, message);
      load.reached(`${topic}/${partition}`, Number(message.offset));
    },
    onProblem: (error) => {
      console.error(
        `warning: alerts: cannot read ${topics.join(", ")}: ${error}; no alert fires`,
      );
      load.giveUp();
    },
    leaveMs: LEAVE_MS,
    alongside: producer,
  });
  stopped.finally(load.giveUp);
  const send = async (topic: string, key: string, value: string | null) => {
    await started;
    await producer.send({ topic, acks: -1, messages: [{ key, value }] });
  };
  return {
    loaded: load.loaded,
    publish: (alert) => {
      send(alertsTopic, alertKey(alert), JSON.stringify(alert)).catch((error) =>
        console.error(`warning: could not write the alert to ${alertsTopic}: ${error}`)
      );
    },
    putRule: (rule) => send(alertRulesTopicOf(config.topic), rule.id, JSON.stringify(rule)),
    deleteRule: (id) => send(alertRulesTopicOf(config.topic), id, null),
    stopped,
  };
}

interface LoadTracker {
  readonly loaded: Promise<void>;
  /** Per "topic/partition" with records, its end offset at the start. */
  expect(ends: Map<string, number>): void;
  /** A record read; the last one of every topic releases the engine. */
  reached(where: string, offset: number): void;
  /** The topics cannot be read (or the stop): let the trades go, firings stay held. */
  giveUp(): void;
}

/** `loaded`, and the engine's release once every topic is read to its start's end. */
function trackLoad(options: {
  engine: AlertEngine;
  topics: readonly string[];
  signal: AbortSignal;
  loadMs: number;
}): LoadTracker {
  const { engine, topics, signal } = options;
  const loaded = Promise.withResolvers<void>();
  /** Per "topic/partition", the offset that ended it at the start; undefined until known. */
  let ends: Map<string, number> | undefined;
  let released = false;
  const check = () => {
    if (released || ends === undefined || ends.size > 0) return;
    released = true;
    clearTimeout(timer);
    engine.release();
    loaded.resolve();
  };
  const timer = setTimeout(() => {
    console.error(
      `warning: alerts: ${topics.join(", ")} not read within ${options.loadMs / 1000} s: ` +
        "alerts are held until they are (an alert already on the topic must not fire twice)",
    );
    loaded.resolve();
  }, options.loadMs);
  const giveUp = () => {
    clearTimeout(timer);
    loaded.resolve();
  };
  signal.addEventListener("abort", giveUp, { once: true });
  return {
    loaded: loaded.promise,
    expect: (known) => {
      ends = known;
      check();
    },
    reached: (where, offset) => {
      if (ends?.has(where) && offset >= ends.get(where)! - 1) ends.delete(where);
      check();
    },
    giveUp,
  };
}

/** Creates the topics if missing, and notes where each ended before reading. */
async function prepareTopics(
  admin: Admin,
  options: { config: Config; topics: readonly string[]; load: LoadTracker },
): Promise<void> {
  const { config, topics, load } = options;
  for (const topic of topics) {
    await ensureTopic(admin, {
      topic,
      partitions: 1,
      replicationFactor: config.replicationFactor,
      configEntries: topic === topics[0] ? ALERTS_TOPIC_CONFIG : ALERT_RULES_TOPIC_CONFIG,
    });
  }
  const ends = new Map<string, number>();
  for (const topic of topics) {
    // Every partition: a topic made by someone else may have more than one.
    for (const { partition, high, low } of await admin.fetchTopicOffsets(topic)) {
      if (Number(high) > Number(low)) ends.set(`${topic}/${partition}`, Number(high));
    }
  }
  load.expect(ends);
}

/** A record of either topic into the engine: a firing, a rule, a deletion. */
export function recordApplier(engine: AlertEngine, alertsTopic: string) {
  let refused = 0;
  return (topic: string, message: KafkaMessage) => {
    const key = message.key?.toString() ?? "";
    const value = message.value?.toString() ?? null;
    if (topic === alertsTopic) {
      const alert = value === null ? null : firedFromJson(value);
      if (alert !== null) engine.noteFired(alert);
      return;
    }
    if (value === null) {
      engine.removeRule(key);
      return;
    }
    try {
      const rule = ruleFromJson(JSON.parse(value));
      if (rule.id !== key) {
        refused++;
        console.error(
          `warning: ${topic}: record ${message.offset} has key ${JSON.stringify(key)} but ` +
            `rule ${JSON.stringify(rule.id)}: refused (${refused} so far)`,
        );
        return;
      }
      engine.setRule(rule);
    } catch (error) {
      console.error(`warning: ${topic}: rule ${key} skipped: ${(error as Error).message}`);
    }
  };
}

/** The engine, its topics and its clock, as a consumer run holds them. */
export interface Alerting {
  readonly engine: AlertEngine;
  readonly topics: AlertTopics;
  /**
   * After each applied batch (consumer/topic_reader.ts onBatch): a live batch (the
   * history was read before it) makes the engine live first, so its crossings count;
   * then its symbols are evaluated.
   */
  batch(symbols: Iterable<string>, live: boolean): void;
  /**
   * The trade reader's "history read" (consumer/topic_reader.ts caughtUp), checked
   * each second, for a run that gets no batch: once true, the engine is live (ALERTS
   * rules count crossings, "no trade" rules are checked).
   */
  follow(caughtUp: () => boolean): void;
  /** Stops the silence clock; resolves once the topics are left. */
  stop(): Promise<void>;
}

/**
 * Alerts for one consumer run: the rules of ALERTS, the topics (the rules topic too
 * when `readRules`), a check of the "no trade" rules each second, and `print` for
 * each alert that fires. Undefined when there is nothing to evaluate (no ALERTS and
 * no rules topic to read): a plain `deno task consume` makes no alert topics.
 */
export function startAlerting(options: {
  readonly config: Config;
  readonly prices: AlertPrices;
  readonly signal: AbortSignal;
  readonly readRules: boolean;
  readonly print: (alert: FiredAlert) => void;
}): Alerting | undefined {
  const { config, signal, readRules } = options;
  if (config.alerts.length === 0 && !readRules) return undefined;
  const engine = new AlertEngine({
    prices: options.prices,
    fire: (alert) => {
      topics.publish(alert);
      options.print(alert);
    },
  });
  for (const rule of config.alerts) engine.setRule(rule);
  const topics = startAlertTopics({ config, engine, signal, readRules });
  let caughtUp = () => false;
  const clock = setInterval(() => {
    if (caughtUp()) engine.goLive();
    engine.checkSilence();
  }, 1_000);
  return {
    engine,
    topics,
    batch: (symbols, live) => {
      if (live) engine.goLive();
      engine.evaluate(symbols);
    },
    follow: (check) => (caughtUp = check),
    stop: async () => {
      clearInterval(clock);
      await topics.stopped;
    },
  };
}
