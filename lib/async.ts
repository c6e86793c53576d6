/**
 * Waiting, bounded: a sleep that a stop cuts short, and a race between work and a
 * stop, so no step of a script waits on a peer that will not answer.
 */

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * `promise`'s value, or "stopped" as soon as `signal` aborts. The promise is left
 * to run out (kafkajs retries a broker that does not answer for seconds, and a stop
 * must not wait for that); a failure after the stop is of no interest.
 */
export async function unlessAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
): Promise<T | "stopped"> {
  promise.catch(() => {});
  let onAbort = () => {};
  const stopped = new Promise<"stopped">((resolve) => {
    onAbort = () => resolve("stopped");
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, stopped]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** `promise`, or a rejection naming `ms` when it takes longer (for calls that take no signal). */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  const result = await unlessAborted(promise, AbortSignal.timeout(ms));
  if (result === "stopped") throw new Error(`no answer in ${ms} ms`);
  return result;
}
