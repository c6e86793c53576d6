/**
 * Network rules the scripts and tools share: what counts as this machine, the
 * `host:port` a URL connects to, and whether the task's permissions reach a host.
 */

import { UsageError } from "./cli.ts";

/**
 * True when `host` names this machine by loopback: `localhost`, 127.0.0.0/8 or
 * `::1`, with or without brackets and a `:port` (as in a Host header or
 * KAFKA_BROKERS). A wildcard bind address (0.0.0.0, ::) is not loopback.
 */
export function isLoopback(host: string): boolean {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[")) name = name.slice(1, name.indexOf("]"));
  else if (name.split(":").length === 2) name = name.slice(0, name.indexOf(":"));
  return name === "localhost" || name === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** `host:port` of a ws://, wss://, http:// or https:// URL, the port filled in as the socket will use it. */
export function hostAndPort(url: string): string {
  const { hostname, port, protocol } = new URL(url);
  const secure = protocol === "wss:" || protocol === "https:";
  return `${hostname}:${port || (secure ? "443" : "80")}`;
}

/**
 * The one line for the first of `hosts` (`host:port`) this process may not connect
 * to, or undefined when it may reach them all. A host the task's permission set
 * leaves out would otherwise fail as a network error (`getaddrinfo EPERM`) only
 * after seconds of retries.
 */
export function netAccessProblem(variable: string, hosts: readonly string[]): string | undefined {
  const host = hosts.find((host) =>
    Deno.permissions.querySync({ name: "net", host }).state !== "granted"
  );
  return host === undefined
    ? undefined
    : `${variable}: no permission to reach ${host}: the local tasks reach only this machine ` +
      "and ws.finnhub.io; use the :remote tasks (deno task produce:remote, consume:remote, " +
      "dashboard:remote)";
}

/**
 * Why a server could not listen, as one line naming the setting to change: a
 * UsageError (exit 2), whichever server it was (the dashboard, the producer's metrics).
 */
export function listenError(
  error: unknown,
  where: { readonly hostname: string; readonly port: number; readonly variable: string },
): UsageError {
  const at = `${where.hostname}:${where.port}`;
  const problem = error instanceof Deno.errors.AddrInUse
    ? `${at} is in use: set ${where.variable} to another port`
    : error instanceof Deno.errors.NotCapable
    ? `no permission to listen on ${at}: add it to the task's "net" permissions in deno.json`
    : `cannot listen on ${at}: ${error instanceof Error ? error.message : error}`;
  return new UsageError(`${where.variable}: ${problem}`);
}
