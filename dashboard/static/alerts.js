// @ts-check
/**
 * Alerts in the page: a small form makes a rule (POST /api/alerts: the consumer
 * keeps it in Kafka and evaluates it, with or without this page), the rules listed
 * with a delete button, and each fired alert (the `alerts` field of a push, no
 * extra push) as a toast and, with permission, a browser notification. Permission
 * is asked only when the user makes a rule or presses "Notify me" (a gesture).
 */

import { formatClock } from "./format.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const TOAST_MS = 10_000;
/** Firings shown (rule id @ trade time, as their Kafka key): each toasts once. */
const shown = new Set();

/** The chart's symbol: the form's symbol when its field is left empty. */
let chartSymbol = () => /** @type {string | null} */ (null);

/** The form's fields as the rule's JSON body. */
function ruleBody() {
  const kind = /** @type {HTMLSelectElement} */ ($("alert-kind")).value;
  const symbol = /** @type {HTMLInputElement} */ ($("alert-symbol")).value.trim() ||
    (chartSymbol() ?? "");
  const value = /** @type {HTMLInputElement} */ ($("alert-value")).value.trim();
  const span = /** @type {HTMLInputElement} */ ($("alert-span")).value.trim();
  if (kind === "above" || kind === "below") return { symbol, kind, level: Number(value) };
  // Spans as typed ("5m"): the server reads them (lib/cli.ts parseDuration).
  if (kind === "move") return { symbol, kind, percent: Number(value), windowMs: span };
  return { symbol, kind, spanMs: span || value };
}

/** Shows the fields the chosen kind needs. */
function syncKind() {
  const kind = /** @type {HTMLSelectElement} */ ($("alert-kind")).value;
  const value = /** @type {HTMLInputElement} */ ($("alert-value"));
  const span = /** @type {HTMLInputElement} */ ($("alert-span"));
  value.hidden = kind === "silent";
  value.placeholder = kind === "move" ? "percent" : "price";
  span.hidden = kind === "above" || kind === "below";
  span.placeholder = kind === "move" ? "window (5m)" : "span (10m)";
}

async function askPermission() {
  if (!("Notification" in globalThis) || Notification.permission !== "default") return;
  try {
    await Notification.requestPermission();
  } catch { /* a browser that refuses to ask: toasts only */ }
  syncNotify();
}

function syncNotify() {
  const button = $("alert-notify");
  const can = "Notification" in globalThis;
  button.hidden = !can || Notification.permission !== "default";
}

/** The rules and recent alerts from the server. */
async function refresh() {
  const response = await fetch("/api/alerts", { headers: { accept: "application/json" } });
  if (!response.ok) {
    $("alerts-panel").hidden = true; // this server evaluates no alerts
    return;
  }
  $("alerts-panel").hidden = false;
  const { rules, fired } = await response.json();
  /** @type {Map<string, number>} */
  const lastFired = new Map();
  for (const alert of fired) lastFired.set(alert.rule.id, alert.tradeTime);
  const list = $("alert-rules");
  list.replaceChildren(...rules.map((/** @type {any} */ rule) => {
    const item = document.createElement("li");
    item.dataset.id = rule.id;
    item.dataset.words = rule.words;
    item.append(document.createElement("span"));
    showFired(item, lastFired.get(rule.id));
    if (!rule.id.startsWith("cfg:")) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.title = "Delete this alert";
      remove.addEventListener("click", () => deleteRule(rule.id));
      item.append(remove);
    } else {
      item.title = "from ALERTS (the server's configuration)";
    }
    return item;
  }));
}

/** A rule's words in the list, with the time it last fired. */
function showFired(/** @type {HTMLElement} */ item, /** @type {number | undefined} */ at) {
  if (at !== undefined && at <= Number(item.dataset.firedAt ?? -Infinity)) return;
  if (at !== undefined) item.dataset.firedAt = String(at);
  /** @type {HTMLElement} */ (item.firstChild).textContent = item.dataset.words +
    (at === undefined ? "" : ` · fired ${formatClock(at)}`);
}

async function deleteRule(/** @type {string} */ id) {
  const response = await fetch(`/api/alerts?id=${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!response.ok) showError(await response.text());
  await refresh();
}

function showError(/** @type {string} */ body) {
  let message = body;
  try {
    message = JSON.parse(body).error ?? body;
  } catch { /* plain text */ }
  const error = $("alert-error");
  error.textContent = message;
  error.hidden = false;
}

async function submit(/** @type {SubmitEvent} */ event) {
  event.preventDefault();
  askPermission(); // a user gesture: the one moment a browser lets the page ask
  $("alert-error").hidden = true;
  const response = await fetch("/api/alerts", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ruleBody()),
  });
  if (!response.ok) {
    showError(await response.text());
    return;
  }
  /** @type {HTMLInputElement} */ ($("alert-value")).value = "";
  await refresh();
}

/** Fired alerts from a push: a toast each, and a notification with permission. */
export function onAlerts(/** @type {any[] | undefined} */ alerts) {
  if (!alerts) return;
  // The list's "fired" times, from the push itself; a rule the list lacks (made in
  // another page) sends for the list once.
  const items = /** @type {HTMLElement[]} */ ([...$("alert-rules").children]);
  let unknown = false;
  for (const alert of alerts) {
    const item = items.find((li) => li.dataset.id === alert.rule.id);
    if (item === undefined) unknown = true;
    else showFired(item, alert.tradeTime);
  }
  if (unknown) refresh().catch(() => {});
  for (const alert of alerts) {
    // A snapshot after a resync carries the firings the page missed, maybe some twice.
    const key = `${alert.rule.id}@${alert.tradeTime}`;
    if (shown.has(key)) continue;
    shown.add(key);
    if (shown.size > 500) shown.delete(shown.values().next().value);
    const mark = alert.source === "sim"
      ? " · simulated"
      : alert.source === "replay"
      ? " · replay"
      : "";
    const time = formatClock(alert.tradeTime);
    const toast = document.createElement("div");
    toast.className = "toast";
    toast.setAttribute("role", "status");
    toast.dataset.rule = alert.rule.id;
    toast.textContent = `${alert.words} · ${time}${mark}`;
    $("toasts").append(toast);
    setTimeout(() => toast.remove(), TOAST_MS);
    if ("Notification" in globalThis && Notification.permission === "granted") {
      try {
        new Notification(`Alert: ${alert.symbol}`, { body: toast.textContent, tag: alert.rule.id });
      } catch { /* some browsers allow notifications only from a service worker */ }
    }
  }
}

/** Wires the form; `symbol` gives the chart's symbol as the form's default. */
export function initAlerts(/** @type {() => string | null} */ symbol) {
  $("alert-kind").addEventListener("change", syncKind);
  $("alert-form").addEventListener("submit", (event) => submit(/** @type {SubmitEvent} */ (event)));
  $("alert-notify").addEventListener("click", askPermission);
  chartSymbol = symbol;
  syncKind();
  syncNotify();
  refresh().catch(() => {});
}
