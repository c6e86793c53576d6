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

import { Cdp } from "../../tests/helpers/cdp.ts";

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

export async function main(args: string[]): Promise<void> {
  const split = args.indexOf("--");
  const own = split < 0 ? [] : args.slice(0, split);
  const command = split < 0 ? args : args.slice(split + 1);
  const seconds = Number(own.find((a) => a.startsWith("--seconds="))?.slice(10) ?? 10);
  const top = Number(own.find((a) => a.startsWith("--top="))?.slice(6) ?? 20);
  if (command[0] !== "run" || command.length < 2) {
    console.error("usage: profile.ts [--seconds=10] [--top=20] -- run <flags> script.ts [args]");
    Deno.exit(2);
  }
  const child = new Deno.Command("deno", {
    args: ["run", "--inspect-wait=127.0.0.1:0", ...command.slice(1)],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let url: string | undefined;
  while (url === undefined) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the script ended before its inspector started:\n${text}`);
    text += value;
    url = /ws:\/\/\S+/.exec(text)?.[0];
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  const cdp = await Cdp.connect(url);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 250 });
  await cdp.send("Profiler.start");
  await cdp.send("Runtime.runIfWaitingForDebugger");
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const { profile } = await cdp.send<{ profile: Profile }>("Profiler.stop");
  await cdp.close();
  child.kill("SIGKILL");
  await child.status;
  const { total, packages, functions } = summarize(profile);
  const pct = (ms: number) => `${(ms / total * 100).toFixed(1).padStart(5)}%`;
  console.log(`${(total / 1000).toFixed(1)} s sampled\n\nby package (self time):`);
  for (const [name, ms] of packages) console.log(`  ${pct(ms)}  ${name}`);
  console.log(`\nbusiest functions (self time):`);
  for (const [name, ms] of functions.slice(0, top)) console.log(`  ${pct(ms)}  ${name}`);
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args);
