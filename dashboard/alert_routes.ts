/**
 * /api/alerts: the page's alert rules. The only routes that change anything, so
 * besides the token gate (lib/auth.ts, checked before this) they take requests from
 * this dashboard's own page only:
 * - a browser names the page's origin (Origin, Sec-Fetch-Site): it must be this
 *   server's own (the Origin's host is the Host the request came to; a proxy must
 *   pass Host on); a tool that names none (curl with a Bearer token) passes on the
 *   gate alone;
 * - the body is JSON (Content-Type application/json: a cross-site form cannot send
 *   it without a preflight that is never answered), at most MAX_BODY_BYTES, checked
 *   field by field, one 400 line per mistake.
 *
 *   GET    /api/alerts          {rules, fired}: the rules (each with its `words`), the
 *                                newest fired alerts
 *   POST   /api/alerts          {symbol, kind, level | percent, windowMs | spanMs}: 201 {rule}
 *                                (a span in ms, or as text: "5m", "30s")
 *   DELETE /api/alerts?id=…     200 {deleted}; a rule from ALERTS cannot be deleted here
 *
 * A rule is written to `<topic>.alert-rules` (Kafka keeps it; every dashboard reads
 * it on start) and set in this consumer's engine at once.
 */

import type { Alerting } from "../consumer/alert_topics.ts";
import { describeRule, RuleError, ruleFromJson } from "../lib/alert_rules.ts";
import { parseDuration } from "../lib/cli.ts";
import { isRecord } from "../lib/trade.ts";
import { json, text } from "./http.ts";

export const MAX_BODY_BYTES = 4_096;

/** The answer to a request for /api/alerts. */
export async function alertsRoute(request: Request, alerting: Alerting | undefined) {
  if (alerting === undefined) return text("alerts are not evaluated by this server", 404);
  if (request.method === "GET" || request.method === "HEAD") {
    // Each rule with its words: the page keeps no copy of describeRule.
    const rules = alerting.engine.rules().map((rule) => ({ ...rule, words: describeRule(rule) }));
    return json({ rules, fired: alerting.engine.since(0).alerts });
  }
  const foreign = foreignOrigin(request);
  if (foreign !== undefined) return text(foreign, 403);
  try {
    if (request.method === "POST") return await create(request, alerting);
    return await remove(request, alerting);
  } catch (error) {
    if (error instanceof RuleError) return json({ error: error.message }, 400);
    throw error;
  }
}

/** Why a browser request comes from another site; undefined when it does not. */
export function foreignOrigin(request: Request): string | undefined {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") {
    return `refused: a ${site} request may not change alerts (use this dashboard's page)`;
  }
  const origin = request.headers.get("origin");
  if (origin === null) return undefined;
  // The host, not the scheme: behind a proxy that ends TLS the server sees http.
  const host = URL.canParse(origin) ? new URL(origin).host : "";
  if (host === "" || host !== request.headers.get("host")) {
    return "refused: another origin may not change alerts (use this dashboard's page)";
  }
  return undefined;
}

async function create(request: Request, alerting: Alerting): Promise<Response> {
  // Made now, it would be armed part-way through history and fire on old crossings.
  if (!alerting.engine.live) return text("history is still being read; try again in a moment", 503);
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new RuleError("send the rule as Content-Type: application/json");
  }
  const body = await readBody(request);
  if (body === undefined) return text(`the body is over ${MAX_BODY_BYTES} bytes`, 413);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new RuleError("the body is not JSON");
  }
  if (!isRecord(value)) throw new RuleError("the body is not a JSON object");
  for (const field of ["id", "createdAt", "armedAt"]) {
    if (field in value) throw new RuleError(`${field}: set by the server, leave it out`);
  }
  const symbol = typeof value.symbol === "string" ? value.symbol.trim() : "";
  value.symbol = symbol || value.symbol;
  const other = alerting.engine.otherCase(symbol);
  if (other !== undefined) {
    throw new RuleError(
      `symbol: no trade of ${symbol}, but of ${other}: symbols are case-sensitive`,
    );
  }
  // A span as the page's field has it ("5m", "30s"): lib/cli.ts parseDuration.
  for (const field of ["windowMs", "spanMs"]) {
    if (typeof value[field] !== "string") continue;
    const raw = value[field] as string;
    const ms = parseDuration(raw);
    if (ms === undefined) {
      throw new RuleError(`${field}: ${JSON.stringify(raw)} is not a span (5m, 30s)`);
    }
    value[field] = ms;
  }
  const rule = ruleFromJson({
    ...value,
    id: `r-${crypto.randomUUID().slice(0, 8)}`,
    createdAt: Date.now(),
    armedAt: alerting.engine.lastTradeTime(symbol),
  });
  alerting.engine.setRule(rule); // throws at the rule cap, before Kafka has it
  try {
    await alerting.topics.putRule(rule);
  } catch (error) {
    alerting.engine.removeRule(rule.id);
    return text(`could not write the rule to Kafka: ${(error as Error).message}`, 503);
  }
  return json({ rule }, 201);
}

async function remove(request: Request, alerting: Alerting): Promise<Response> {
  const id = new URL(request.url).searchParams.get("id") ?? "";
  if (id === "") throw new RuleError("id: missing (example: ?id=r-1a2b3c4d)");
  if (id.startsWith("cfg:")) {
    throw new RuleError(`id: ${id} comes from ALERTS: change the variable and restart`);
  }
  if (!alerting.engine.rules().some((rule) => rule.id === id)) {
    return json({ error: `id: no rule ${id}` }, 404);
  }
  try {
    await alerting.topics.deleteRule(id);
  } catch (error) {
    return text(`could not write the deletion to Kafka: ${(error as Error).message}`, 503);
  }
  alerting.engine.removeRule(id);
  return json({ deleted: id });
}

/** The body as text, or undefined past MAX_BODY_BYTES (it stops reading there). */
async function readBody(request: Request): Promise<string | undefined> {
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(all);
}
