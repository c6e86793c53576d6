/**
 * The container's health check (docker/Dockerfile's HEALTHCHECK): exit 0 when the
 * dashboard on this machine answers /healthz with 200 (the consumer is connected to
 * Kafka), else 1 with one line saying why. The dashboard's port is DASHBOARD_PORT.
 *
 * When the dashboard serves HTTPS (DASHBOARD_CERT), the check does too: it trusts
 * the dashboard's own certificate and public CAs, and skips only the host-name match,
 * since a certificate made for the public name is asked for here as 127.0.0.1.
 *
 *   deno run -q --no-prompt -P=healthcheck tools/healthcheck.ts
 */

import { readPem } from "../lib/pem.ts";
import { withTimeout } from "../lib/async.ts";

const TIMEOUT_MS = 4_000;
const HOST = "127.0.0.1";

/** The status code of GET /healthz over TLS: HTTP/1.1 by hand, `fetch` cannot skip the name. */
async function httpsStatus(port: number, certificate: string): Promise<number> {
  const connection = await Deno.connectTls({
    hostname: HOST,
    port,
    caCerts: [certificate],
    unsafelyDisableHostnameVerification: true,
  });
  try {
    const request = `GET /healthz HTTP/1.1\r\nHost: ${HOST}:${port}\r\nConnection: close\r\n\r\n`;
    await connection.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(64);
    let read = 0;
    while (read < 12) {
      const n = await connection.read(buffer.subarray(read));
      if (n === null) break;
      read += n;
    }
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(
      new TextDecoder().decode(buffer.subarray(0, read)),
    );
    if (status === null) throw new Error("no HTTP status line in the answer");
    return Number(status[1]);
  } finally {
    connection.close();
  }
}

async function httpStatus(port: number): Promise<number> {
  const response = await fetch(`http://${HOST}:${port}/healthz`);
  await response.body?.cancel();
  return response.status;
}

export async function main(): Promise<number> {
  const port = Number(Deno.env.get("DASHBOARD_PORT")?.trim() || "8080");
  const certFile = Deno.env.get("DASHBOARD_CERT")?.trim() ?? "";
  const url = `${certFile === "" ? "http" : "https"}://${HOST}:${port}/healthz`;
  try {
    const status = await withTimeout(
      certFile === "" ? httpStatus(port) : httpsStatus(
        port,
        readPem({
          variable: "DASHBOARD_CERT",
          path: certFile,
          kind: "certificate",
          example: "certs/cert.pem",
          outOfReach: "keep it under certs/",
        }),
      ),
      TIMEOUT_MS,
    );
    if (status === 200) return 0;
    console.error(`unhealthy: ${url} answered ${status}`);
  } catch (error) {
    console.error(`unhealthy: ${url}: ${error instanceof Error ? error.message : error}`);
  }
  return 1;
}

if (import.meta.main) Deno.exit(await main());
