/**
 * Where a script's CPU time goes: runs it under the V8 inspector, samples it for a
 * while, and prints the time by package (ours, kafkajs, Deno's runtime, GC, idle)
 * and the busiest functions.
 *
 *   deno run -A tools/bench/profile.ts [--seconds=10] [--top=20] -- run <flags> producer.ts ...
 *
 * Start the script with enough work to outlast the sampling window (it is killed
 * at the end of it): e.g. `producer.ts --source=sim --rate=max --limit=5000000`.
 */

import { sleep } from "../../lib/async.ts";
import { exitCodeFor, parseFlags, positive, UsageError } from "../../lib/cli.ts";
import { lines } from "../../lib/lines.ts";

const USAGE = "usage: profile.ts [--seconds=10] [--top=20] -- run <flags> script.ts [args]";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The package a frame belongs to. */
export function packageOf(url: string, name: string): string {
  if (name === "(garbage collector)") return "GC";
  if (name === "(idle)") return "idle";
  if (name === "(program)" || url === "") return "native (V8, Deno runtime)";
  if (url.includes("/node_modules/")) {
    return /node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
      "node_modules";
  }
  if (url.startsWith("ext:") || url.startsWith("node:")) return "Deno runtime (JS)";
  return "ours";
}

/** Self time per package and per function, in ms. */
export function summarize(profile: Profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const packages = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  for (const [id, ms] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const pkg = packageOf(url, functionName);
    packages.set(pkg, (packages.get(pkg) ?? 0) + ms);
    const where = url ? ` ${url.replace(/^.*\/(node_modules|work)\//, "")}:${lineNumber + 1}` : "";
    const key = `${functionName || "(anonymous)"}${where}`;
    functions.set(key, (functions.get(key) ?? 0) + ms);
    total += ms;
  }
  const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
  return { total, packages: sorted(packages), functions: sorted(functions) };
}

/**
 * The few Chrome DevTools Protocol calls the profiler makes, over the inspector's
 * WebSocket: a request with an id, its answer with the same id.
 */
class Inspector {
  readonly #socket: WebSocket;
  readonly #waiting = new Map<number, PromiseWithResolvers<unknown>>();
  #next = 1;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      const waiting = message.id === undefined ? undefined : this.#waiting.get(message.id);
      if (!waiting) return; // an event, not an answer
      this.#waiting.delete(message.id!);
      if (message.error) waiting.reject(new Error(message.error.message));
      else waiting.resolve(message.result);
    };
  }

  static async connect(url: string): Promise<Inspector> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`cannot connect to the inspector at ${url}`));
    });
    return new Inspector(socket);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    const answer = Promise.withResolvers<unknown>();
    this.#waiting.set(id, answer);
    this.#socket.send(JSON.stringify({ id, method, params }));
    return answer.promise as Promise<T>;
  }

  close(): void {
    this.#socket.close();
  }
}

/** Starts `deno <command>` waiting for a debugger; the child and its inspector's URL. */
async function startInspected(command: readonly string[]) {
  const child = new Deno.Command("deno", {
    args: ["run", "--inspect-wait=127.0.0.1:0", ...command.slice(1)],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = lines(child.stderr).getReader();
  const seen: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the script ended before its inspector started:\n${seen.join("\n")}`);
    const url = /ws:\/\/\S+/.exec(value)?.[0];
    if (url) {
      (async () => {
        while (!(await reader.read()).done) { /* its later lines are not shown */ }
      })();
      return { child, url };
    }
    seen.push(value);
  }
}

/** Samples the script for `seconds` from its first line. */
async function sample(command: readonly string[], seconds: number): Promise<Profile> {
  const { child, url } = await startInspected(command);
  try {
    const inspector = await Inspector.connect(url);
    await inspector.send("Profiler.enable");
    await inspector.send("Profiler.setSamplingInterval", { interval: 250 });
    await inspector.send("Profiler.start");
    await inspector.send("Runtime.runIfWaitingForDebugger");
    await sleep(seconds * 1000);
    const { profile } = await inspector.send<{ profile: Profile }>("Profiler.stop");
    inspector.close();
    return profile;
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

export async function main(args: string[]): Promise<number> {
  try {
    const split = args.indexOf("--");
    const flags = parseFlags(split < 0 ? args : args.slice(0, split), {
      seconds: { type: "string" },
      top: { type: "string" },
      help: { type: "boolean" },
    });
    if (flags.help) {
      console.log(USAGE);
      return 0;
    }
    const command = split < 0 ? [] : args.slice(split + 1);
    if (command[0] !== "run" || command.length < 2) throw new UsageError(USAGE);
    const seconds = positive("seconds", flags.seconds ?? "10");
    const top = positive("top", flags.top ?? "20", { integer: true });
    const { total, packages, functions } = summarize(await sample(command, seconds));
    const pct = (ms: number) => `${(ms / total * 100).toFixed(1).padStart(5)}%`;
    console.log(`${(total / 1000).toFixed(1)} s sampled\n\nby package (self time):`);
    for (const [name, ms] of packages) console.log(`  ${pct(ms)}  ${name}`);
    console.log(`\nbusiest functions (self time):`);
    for (const [name, ms] of functions.slice(0, top)) console.log(`  ${pct(ms)}  ${name}`);
    return 0;
  } catch (error) {
    return exitCodeFor(error);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
