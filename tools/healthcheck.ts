/**
 * The container's health check (docker/Dockerfile's HEALTHCHECK): exit 0 when the
 * dashboard on this machine answers /healthz with 200 (the consumer is connected to
 * Kafka), else 1 with one line saying why. The dashboard's port is DASHBOARD_PORT.
 *
 *   deno run -q --no-prompt -P=healthcheck tools/healthcheck.ts
 */

const TIMEOUT_MS = 4_000;

export async function main(): Promise<number> {
  const port = Deno.env.get("DASHBOARD_PORT")?.trim() || "8080";
  const url = `http://127.0.0.1:${port}/healthz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    await response.body?.cancel();
    if (response.ok) return 0;
    console.error(`unhealthy: ${url} answered ${response.status}`);
  } catch (error) {
    console.error(`unhealthy: ${url}: ${error instanceof Error ? error.message : error}`);
  }
  return 1;
}

if (import.meta.main) Deno.exit(await main());
