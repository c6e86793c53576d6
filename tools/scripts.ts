/**
 * How a script runs when a tool or a test starts it as a user's task would: with
 * its permission set from deno.json (the one declaration of what each script may
 * touch) and its V8 flags. Tests and the benchmark leave out `--env-file`, so a
 * developer's `.env` never steers them; the demo keeps it. deno.json's `produce`,
 * `consume`, `dashboard` and `dashboard:shared` tasks, and the `:remote` variants (any
 * host, and certificates in `certs/`), are these words with `--env-file`
 * (tests/cli_test.ts holds them to it).
 */

import { fileURLToPath } from "node:url";

/** A permission set in deno.json; its task is the same name, `-` written `:`. */
export type Script =
  | "produce"
  | "consume"
  | "dashboard"
  | "dashboard-shared"
  | "produce-remote"
  | "consume-remote"
  | "dashboard-remote";

/** A young generation this small keeps RSS flat under load (see the README's measurements). */
const V8_FLAGS = "--v8-flags=--max-semi-space-size=4";

const FILES: Record<Script, string[]> = {
  produce: ["producer.ts"],
  consume: ["consumer.ts"],
  dashboard: ["consumer.ts", "--dashboard"],
  // The dashboard beyond loopback: the same script, allowed to listen on 0.0.0.0 / [::].
  "dashboard-shared": ["consumer.ts", "--dashboard"],
  // A cluster beyond this machine: the same scripts, allowed any host and certs/.
  "produce-remote": ["producer.ts"],
  "consume-remote": ["consumer.ts"],
  "dashboard-remote": ["consumer.ts", "--dashboard"],
};

/** The deno.json task that runs `script`. */
export function taskOf(script: Script): string {
  return script.replace("-", ":");
}

/** The project root: scripts run here, with the relative paths their permission sets name. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/**
 * `deno` arguments that run `script` with its permission set. `envFile` loads `.env`
 * as the task does; `files` replaces the set's read and write paths (a test's
 * recordings in a temporary folder).
 */
export function scriptArgs(
  script: Script,
  options: { envFile?: boolean; files?: string } = {},
): string[] {
  const files = options.files === undefined
    ? []
    : [`--allow-read=${options.files}`, `--allow-write=${options.files}`];
  const envFile = options.envFile ? ["--env-file"] : [];
  return [
    "run",
    "-q",
    "--no-prompt",
    `-P=${script}`,
    ...files,
    ...envFile,
    V8_FLAGS,
    ...FILES[script],
  ];
}
