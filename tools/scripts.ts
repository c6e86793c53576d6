/**
 * How a script runs when a tool or a test starts it as a user's task would: with
 * its permission set from deno.json (the one declaration of what each script may
 * touch) and its V8 flags. Tests and the benchmark leave out `--env-file`, so a
 * developer's `.env` never steers them; the demo keeps it. deno.json's `produce`,
 * `consume` and `dashboard` tasks are these words with `--env-file`, and their
 * `:remote` variants the same with the `-remote` set: any host, and certificates in
 * `certs/` (tests/cli_test.ts holds them to it).
 */

import { fileURLToPath } from "node:url";

export type Script = "produce" | "consume" | "dashboard";

/** A young generation this small keeps RSS flat under load (see the README's measurements). */
const V8_FLAGS = "--v8-flags=--max-semi-space-size=4";

const FILES: Record<Script, string[]> = {
  produce: ["producer.ts"],
  consume: ["consumer.ts"],
  dashboard: ["consumer.ts", "--dashboard"],
};

/** The project root: scripts run here, with the relative paths their permission sets name. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/**
 * `deno` arguments that run `script` with its permission set. `envFile` loads `.env`
 * as the task does; `remote` takes the `-remote` set (the `:remote` task); `files`
 * replaces the set's read and write paths (a test's recordings and certificates in a
 * temporary folder).
 */
export function scriptArgs(
  script: Script,
  options: { envFile?: boolean; remote?: boolean; files?: string } = {},
): string[] {
  const files = options.files === undefined
    ? []
    : [`--allow-read=${options.files}`, `--allow-write=${options.files}`];
  const envFile = options.envFile ? ["--env-file"] : [];
  return [
    "run",
    "-q",
    "--no-prompt",
    `-P=${script}${options.remote ? "-remote" : ""}`,
    ...files,
    ...envFile,
    V8_FLAGS,
    ...FILES[script],
  ];
}
