/**
 * The alert topics, read and written by the consumer:
 * - `<topic>.alert-rules` (compacted, one partition): key = rule id, value = the rule
 *   as JSON, a tombstone (null value) deletes it. The dashboard writes it (POST and
 *   DELETE /api/alerts); every dashboard reads it from the beginning on start, so the
 *   rules survive a restart. `deno task consume` (no server) takes its rules from
 *   ALERTS only and does not read it.
 * - `<topic>.alerts` (one partition, a week): key = rule id, value = the fired alert as
 *   JSON (lib/alert_rules.ts FiredAlert), readable by any tool (kcat). Every viewer
 *   reads it from the beginning too: each rule's newest firing is what keeps a
 *   restarted consumer from firing again for history (consumer/alerts.ts).
 *
 * Like the feed reader (consumer/feed.ts): its own consumer group per process,
 * nothing committed. `loaded` resolves once both topics are read up to their ends
 * as they were at the start (or after LOAD_MS, with a warning): the trade reader
 * waits for it, so history is evaluated knowing what already fired.
 */

import { Partitioners, type Producer } from "kafkajs";
import type { Config } from "../config.ts";
import { unlessAborted } from "../lib/async.ts";
import {
  ALERT_RULES_TOPIC_CONFIG,
  type AlertRule,
  alertRulesTopicOf,
  ALERTS_TOPIC_CONFIG,
  alertsTopicOf,
  type FiredAlert,
  firedFromJson,
  ruleFromJson,
} from "../lib/alert_rules.ts";
import { createKafka, ensureTopic } from "../lib/kafka.ts";
import { AlertEngine, type AlertPrices } from "./alerts.ts";

const LOAD_MS = 15_000;
const LEAVE_MS = 300;

export interface AlertTopics {
  /** Both topics read to where they ended at the start. */
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
}): AlertTopics {
  const { config, engine, signal, readRules } = options;
  const rulesTopic = alertRulesTopicOf(config.topic);
  const alertsTopic = alertsTopicOf(config.topic);
  const topics = readRules ? [alertsTopic, rulesTopic] : [alertsTopic];
  const kafka = createKafka(config, "alerts");
  const consumer = kafka.consumer({
    groupId: `${config.groupId}.alerts.${crypto.randomUUID().slice(0, 8)}`,
  });
  const producer: Producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const loaded = Promise.withResolvers<void>();
  /** Per topic, the offset that ended it at the start: read past it, the topic is loaded. */
  const ends = new Map<string, number>();
  const reached = (topic: string, offset: number) => {
    if (ends.has(topic) && offset >= ends.get(topic)! - 1) ends.delete(topic);
    if (ends.size === 0) loaded.resolve();
  };
  const apply = (topic: string, key: string, value: string | null) => {
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
      engine.setRule(ruleFromJson(JSON.parse(value)));
    } catch (error) {
      console.error(`warning: ${rulesTopic}: rule ${key} skipped: ${(error as Error).message}`);
    }
  };
  const run = async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      for (const topic of topics) {
        await ensureTopic(admin, {
          topic,
          partitions: 1,
          replicationFactor: config.replicationFactor,
          configEntries: topic === alertsTopic ? ALERTS_TOPIC_CONFIG : ALERT_RULES_TOPIC_CONFIG,
        });
      }
      for (const topic of topics) {
        const [{ high, low }] = await admin.fetchTopicOffsets(topic);
        if (Number(high) > Number(low)) ends.set(topic, Number(high));
      }
    } finally {
      await admin.disconnect();
    }
    reached("", 0);
    await producer.connect();
    if (signal.aborted) return;
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    if (signal.aborted) return;
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ topic, message }) => {
        apply(topic, message.key?.toString() ?? "", message.value?.toString() ?? null);
        reached(topic, Number(message.offset));
        return Promise.resolve();
      },
    });
  };
  const running = run();
  const timer = setTimeout(() => {
    console.error(`warning: alerts: ${topics.join(", ")} not read within ${LOAD_MS / 1000} s`);
    loaded.resolve();
  }, LOAD_MS);
  loaded.promise.then(() => clearTimeout(timer));
  signal.addEventListener("abort", () => loaded.resolve(), { once: true });
  const stopped = (async () => {
    try {
      await unlessAborted(running, signal);
      if (!signal.aborted) {
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      }
    } catch (error) {
      if (!signal.aborted) {
        console.error(`warning: alerts: cannot read ${topics.join(", ")}: ${error}`);
      }
      loaded.resolve();
    } finally {
      clearTimeout(timer);
      await unlessAborted(
        Promise.allSettled([consumer.disconnect(), producer.disconnect()]),
        AbortSignal.timeout(LEAVE_MS * 5),
      ).catch(() => {});
      running.finally(() => {
        consumer.disconnect().catch(() => {});
        producer.disconnect().catch(() => {});
      }).catch(() => {});
    }
  })();
  const send = async (topic: string, key: string, value: string | null) => {
    await running;
    await producer.send({ topic, acks: -1, messages: [{ key, value }] });
  };
  return {
    loaded: loaded.promise,
    publish: (alert) => {
      send(alertsTopic, alert.rule.id, JSON.stringify(alert)).catch((error) =>
        console.error(`warning: could not write the alert to ${alertsTopic}: ${error}`)
      );
    },
    putRule: (rule) => send(rulesTopic, rule.id, JSON.stringify(rule)),
    deleteRule: (id) => send(rulesTopic, id, null),
    stopped,
  };
}

/** The engine, its topics and its clock, as a consumer run holds them. */
export interface Alerting {
  readonly engine: AlertEngine;
  readonly topics: AlertTopics;
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
    startedAt: Date.now(),
    fire: (alert) => {
      topics.publish(alert);
      options.print(alert);
    },
  });
  for (const rule of config.alerts) engine.setRule(rule);
  const topics = startAlertTopics({ config, engine, signal, readRules });
  const clock = setInterval(() => engine.checkSilence(), 1_000);
  return {
    engine,
    topics,
    stop: async () => {
      clearInterval(clock);
      await topics.stopped;
    },
  };
}
