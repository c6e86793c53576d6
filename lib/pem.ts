/**
 * PEM files named by a setting (Kafka's CA and client certificate, the dashboard's
 * certificate): read once at start, so a missing, unreadable or wrong file is one
 * line naming the setting, the path and the fix (exit 2) before anything connects.
 * A message never quotes the file.
 */

import { UsageError } from "./cli.ts";

export interface PemFile {
  /** The setting that names the file, e.g. KAFKA_SSL_CA. */
  readonly variable: string;
  readonly path: string;
  readonly kind: "certificate" | "private key";
  /** A good value of the setting, for the message. */
  readonly example: string;
  /** What to do when the task's permissions leave the file out. */
  readonly outOfReach: string;
}

const BEGIN = {
  certificate: /^-----BEGIN CERTIFICATE-----$/m,
  "private key": /^-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----$/m,
} as const;
const ENCRYPTED = /^-----BEGIN ENCRYPTED PRIVATE KEY-----$|^Proc-Type: 4,ENCRYPTED$/m;

/** The PEM text of `file.path`, or a UsageError: "VARIABLE: problem (example: VARIABLE=…)". */
export function readPem(file: PemFile): string {
  const { variable, path, kind, example } = file;
  const fail = (problem: string): never => {
    throw new UsageError(`${variable}: ${problem} (example: ${variable}=${example})`);
  };
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      fail(`this task may not read "${path}": ${file.outOfReach}`);
    }
    fail(
      `"${path}": ${
        error instanceof Deno.errors.NotFound
          ? "no such file"
          : error instanceof Deno.errors.PermissionDenied
          ? "not readable by this user"
          : error instanceof Deno.errors.IsADirectory
          ? "a folder, not a file"
          : "unreadable"
      }`,
    );
  }
  if (kind === "private key" && ENCRYPTED.test(text)) {
    const decrypt = `openssl pkey -in ${path} -out certs/decrypted.key`;
    fail(`"${path}" is an encrypted key: decrypt it once (${decrypt}) and name that`);
  }
  if (!BEGIN[kind].test(text)) fail(`"${path}" holds no PEM ${kind} ("-----BEGIN ..." line)`);
  return text;
}
