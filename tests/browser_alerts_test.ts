/**
 * An alert from end to end, in a real browser: a rule made with the page's form
 * (POST /api/alerts -> the rules topic) fires in the consumer when the price sent
 * by the fake Finnhub through the real producer crosses it; the firing is a record
 * on the alerts topic (read back with kcat) and a toast on the page. The dashboard
 * is then restarted with the price still above the level: it reads the rule and its
 * last firing back from Kafka, rebuilds the trades from history without firing again
 * (kcat sees one record), and fires only on a new crossing.
 */

import assert from "node:assert/strict";
import {
  type Page,
  type PageDocument,
  recordPage,
  waitFor,
  withBrowser,
} from "./helpers/browser.ts";
import { FakeFinnhub } from "./helpers/fake_finnhub.ts";
import { BROKERS, withTopic } from "./helpers/kafka.ts";
import {
  readAlerts,
  startDashboardConsumer,
  startProducer,
  waitUntil,
} from "./helpers/processes.ts";
import { alertRulesTopicOf, alertsTopicOf } from "../lib/alert_rules.ts";
import { sleep } from "../lib/async.ts";

declare const document: PageDocument;

/** `UPDATE_SCREENSHOT=1` writes the page with its first toast to docs/alerts.png. */
const SCREENSHOT = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/alerts.png", import.meta.url)
  : undefined;

/** Sends one AAPL trade at `price` and waits until the dashboard has applied it. */
async function trade(fake: FakeFinnhub, url: string, price: number): Promise<void> {
  assert.ok(fake.sendTrades([{ s: "AAPL", p: price, t: Date.now(), v: 1, c: ["1"] }]));
  await waitUntil(`AAPL at ${price} on the dashboard`, async () => {
    const response = await fetch(new URL("api/symbols", url));
    const { symbols } = await response.json();
    return symbols.some((s: { symbol: string; last: number }) =>
      s.symbol === "AAPL" && s.last === price
    );
  });
  await sleep(300); // the batch's evaluation and the push after it
}

/** Runs in the page before its scripts: counts the notifications it makes. */
function countNotifications() {
  type Maker = new (title: string, options?: unknown) => object;
  const scope = globalThis as unknown as { Notification: Maker; notified: string[] };
  const Real = scope.Notification;
  scope.notified = [];
  scope.Notification = class extends Real {
    constructor(title: string, options?: unknown) {
      scope.notified.push(title);
      super(title, options);
    }
  };
}

const toasts = (page: Page) =>
  page.evaluate(() => [...document.querySelectorAll("#toasts .toast")].map((t) => t.textContent));

Deno.test("an alert made in the page fires on a crossing: alerts topic, toast, and not again after a restart", async () => {
  const fake = new FakeFinnhub();
  try {
    await withTopic(1, async (topic, _kafka, admin) => {
      const env = {
        KAFKA_BROKERS: BROKERS,
        KAFKA_TOPIC: topic,
        KAFKA_GROUP_ID: `${topic}-viewer`,
        FINNHUB_TOKEN: fake.token,
        FINNHUB_WS_URL: fake.url,
      };
      try {
        await using producer = startProducer(["--symbols=AAPL", "--status-interval=0"], env);
        await fake.waitForSubscribed(1, ["AAPL"], 30_000);
        let dashboard = await startDashboardConsumer([], env);
        await trade(fake, dashboard.url, 100);
        await withBrowser({ width: 1440, height: 900 }, async (browser) => {
          // Notifications allowed, and counted as the page makes them.
          await browser.defaultBrowserContext().overridePermissions(dashboard.url, [
            "notifications",
          ]);
          let page = await browser.newPage();
          await page.evaluateOnNewDocument(countNotifications);
          const log = recordPage(page);
          await page.goto(`${dashboard.url}#symbol=AAPL&window=1m`);
          await waitFor(
            page,
            "the alerts form",
            () => document.querySelectorAll("#alerts-panel:not([hidden])").length === 1,
          );
          await page.type("#alert-symbol", "AAPL");
          await page.select("#alert-kind", "above");
          await page.type("#alert-value", "105");
          await page.click("#alert-add");
          await waitFor(
            page,
            "the rule listed",
            () => document.querySelectorAll("#alert-rules li").length === 1,
          );
          assert.equal(
            await page.evaluate(() => document.querySelectorAll("#alert-rules li")[0].textContent),
            "AAPL crosses above 105×",
          );

          let listRequests = 0;
          page.on("request", (request) => {
            const url = new URL(request.url());
            if (url.pathname === "/api/alerts" && request.method() === "GET") listRequests++;
          });
          await trade(fake, dashboard.url, 104);
          await trade(fake, dashboard.url, 106); // the crossing
          await waitFor(
            page,
            "the toast",
            () => document.querySelectorAll("#toasts .toast").length > 0,
          );
          assert.match((await toasts(page))[0]!, /^AAPL crossed above 105 at 106 · /);
          assert.deepEqual(
            await page.evaluate(() => (globalThis as unknown as { notified: string[] }).notified),
            ["Alert: AAPL"],
          );
          await waitFor(
            page,
            "the rule's firing time",
            () =>
              /· fired /.test(document.querySelectorAll("#alert-rules li")[0].textContent ?? ""),
          );
          assert.equal(listRequests, 0, "the firing time comes with the push: no request");
          const png = await page.screenshot();
          if (SCREENSHOT) await Deno.writeFile(SCREENSHOT, png);
          await trade(fake, dashboard.url, 107); // still above: no second firing
          let alerts = await readAlerts(BROKERS, topic);
          assert.deepEqual(alerts.map((a) => [a.symbol, a.price, a.rule.kind]), [[
            "AAPL",
            106,
            "above",
          ]]);
          assert.equal(alerts[0].source, "finnhub");
          assert.ok(alerts[0].firedAt >= alerts[0].tradeTime);
          await dashboard.waitFor(/alert: AAPL crossed above 105 at 106 \(trade /);

          // A restart: the rule comes back from Kafka, and history (100 104 106 107, read
          // in one batch, the price still above 105) does not fire again. Only the last
          // firing, read back from the alerts topic, says so: the rule was armed at 100
          // when it was made, so without it 107 would be a crossing (a second record).
          await page.close();
          dashboard.kill("SIGTERM");
          assert.equal((await dashboard.done).code, 0);
          dashboard = await startDashboardConsumer([], env);
          page = await browser.newPage();
          const log2 = recordPage(page);
          await page.goto(`${dashboard.url}#symbol=AAPL&window=1m`);
          await waitFor(
            page,
            "the rule, read back",
            () => document.querySelectorAll("#alert-rules li").length === 1,
          );
          await trade(fake, dashboard.url, 108); // still above since 106: no crossing
          assert.equal((await readAlerts(BROKERS, topic)).length, 1, "the restart fired again");
          await trade(fake, dashboard.url, 103); // back under: re-armed
          assert.equal((await readAlerts(BROKERS, topic)).length, 1, "history did not fire again");
          await trade(fake, dashboard.url, 105.5); // a new crossing
          await waitFor(
            page,
            "the new toast",
            () => document.querySelectorAll("#toasts .toast").length > 0,
          );
          assert.match((await toasts(page))[0]!, /^AAPL crossed above 105 at 105\.5 · /);
          await waitUntil(
            "the second alert in Kafka",
            async () => (await readAlerts(BROKERS, topic)).length === 2,
          );
          alerts = await readAlerts(BROKERS, topic);
          assert.deepEqual(alerts.map((a) => a.price), [106, 105.5]);
          assert.equal(alerts[0].rule.id, alerts[1].rule.id);
          assert.equal(dashboard.stdout.match(/^alert: /gm)?.length, 1, dashboard.stdout);
          for (const entry of [log, log2]) {
            const problems = entry.console.filter((line) => /error|uncaught|violat/i.test(line));
            assert.deepEqual(problems, [], "no console errors");
          }
          await page.close();
        });
        dashboard.kill("SIGTERM");
        assert.equal((await dashboard.done).code, 0);
        producer.kill("SIGTERM");
        assert.equal((await producer.done).code, 0);
      } finally {
        await admin.deleteTopics({ topics: [alertsTopicOf(topic), alertRulesTopicOf(topic)] })
          .catch(() => {});
      }
    });
  } finally {
    await fake.close();
  }
});
