/**
 * Headless Chromium (the Debian package) driven over the DevTools protocol with
 * Deno's own WebSocket: enough to open a page, run a script in it, read the
 * console, and take a screenshot — no puppeteer or playwright download.
 */

export const CHROMIUM = "/usr/bin/chromium";

type Message = { id?: number; method?: string; params?: unknown; sessionId?: string } & {
  result?: unknown;
  error?: { message: string };
};

export interface CdpEvent {
  readonly method: string;
  readonly params: Record<string, unknown>;
  readonly sessionId?: string;
}

/** One DevTools connection: commands by id, events to listeners. */
export class Cdp {
  readonly #socket: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  readonly #listeners = new Set<(event: CdpEvent) => void>();
  readonly closed: Promise<void>;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => socket.addEventListener("close", () => resolve()));
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(String(event.data)) as Message;
      if (message.id !== undefined) {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error) pending?.reject(new Error(message.error.message));
        else pending?.resolve(message.result);
      } else if (message.method !== undefined) {
        const cdpEvent = {
          method: message.method,
          params: (message.params ?? {}) as Record<string, unknown>,
          sessionId: message.sessionId,
        };
        for (const listener of this.#listeners) listener(cdpEvent);
      }
    });
    socket.addEventListener("close", () => {
      for (const pending of this.#pending.values()) pending.reject(new Error("CDP closed"));
      this.#pending.clear();
    });
  }

  static async connect(url: string): Promise<Cdp> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error(`cannot reach ${url}`)), {
        once: true,
      });
    });
    return new Cdp(socket);
  }

  send<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#socket.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  on(listener: (event: CdpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#socket.readyState !== WebSocket.CLOSED) this.#socket.close();
    await this.closed;
  }
}

/** A tab, attached in flat mode: commands carry its session id. */
export class Page {
  readonly cdp: Cdp;
  readonly sessionId: string;
  /** Console messages and uncaught errors, as text. */
  readonly console: string[] = [];
  /** alert/confirm/prompt dialogs the page tried to open. */
  readonly dialogs: string[] = [];

  constructor(cdp: Cdp, sessionId: string) {
    this.cdp = cdp;
    this.sessionId = sessionId;
    cdp.on((event) => {
      if (event.sessionId !== sessionId) return;
      if (event.method === "Runtime.consoleAPICalled") {
        const args = event.params.args as { value?: unknown; description?: string }[];
        this.console.push(args.map((arg) => String(arg.value ?? arg.description)).join(" "));
      } else if (event.method === "Runtime.exceptionThrown") {
        const details = event.params.exceptionDetails as {
          text: string;
          exception?: { description?: string };
        };
        this.console.push(`uncaught: ${details.exception?.description ?? details.text}`);
      } else if (event.method === "Log.entryAdded") {
        const entry = event.params.entry as { level: string; text: string };
        this.console.push(`${entry.level}: ${entry.text}`);
      } else if (event.method === "Page.javascriptDialogOpening") {
        this.dialogs.push(String(event.params.message));
        this.send("Page.handleJavaScriptDialog", { accept: false }).catch(() => {});
      }
    });
  }

  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown> = {}) {
    return this.cdp.send<T>(method, params, this.sessionId);
  }

  /** Runs an expression in the page and returns its JSON value (promises awaited). */
  async evaluate<T>(expression: string): Promise<T> {
    const result = await this.send<{
      result: { value?: unknown };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    }>("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (result.exceptionDetails) {
      const { text, exception } = result.exceptionDetails;
      throw new Error(`in page: ${exception?.description ?? text}`);
    }
    return result.result.value as T;
  }

  /** Polls an expression until it is truthy; throws with `what` after `timeoutMs`. */
  async waitFor<T>(expression: string, what: string, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const value = await this.evaluate<T>(expression);
      if (value) return value;
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what} (last value: ${JSON.stringify(value)})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.send<{ data: string }>("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: false,
    });
    return Uint8Array.from(atob(data), (char) => char.charCodeAt(0));
  }
}

export interface Browser {
  readonly cdp: Cdp;
  newPage(width: number, height: number): Promise<Page>;
  close(): Promise<void>;
}

/** Starts headless Chromium with a fresh profile and connects to it. */
export async function launchChromium(): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "market-stream-chromium-" });
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    await Deno.remove(profile, { recursive: true });
    throw new Error(
      `no ${CHROMIUM}: install the Debian package chromium (apt-get install chromium)`,
    );
  }
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--no-default-browser-check",
      "--hide-scrollbars",
      "--mute-audio",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Chromium prints its DevTools address on stderr; keep the tail for error messages.
  const lines: string[] = [];
  const address = Promise.withResolvers<string>();
  const drained = (async () => {
    const decoder = new TextDecoderStream();
    let buffer = "";
    for await (const chunk of child.stderr.pipeThrough(decoder)) {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        lines.push(line);
        if (lines.length > 40) lines.shift();
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(line);
        if (match) address.resolve(match[1]);
      }
    }
    address.reject(new Error(`chromium exited before listening:\n${lines.join("\n")}`));
  })();
  const timer = setTimeout(
    () => address.reject(new Error(`chromium did not start in 15 s:\n${lines.join("\n")}`)),
    15_000,
  );
  let cdp: Cdp;
  try {
    cdp = await Cdp.connect(await address.promise);
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    await drained;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return {
    cdp,
    async newPage(width, height) {
      const { targetId } = await cdp.send<{ targetId: string }>("Target.createTarget", {
        url: "about:blank",
      });
      const { sessionId } = await cdp.send<{ sessionId: string }>("Target.attachToTarget", {
        targetId,
        flatten: true,
      });
      const page = new Page(cdp, sessionId);
      await Promise.all([
        page.send("Page.enable"),
        page.send("Runtime.enable"),
        page.send("Log.enable"),
        page.send("Emulation.setDeviceMetricsOverride", {
          width,
          height,
          deviceScaleFactor: 1,
          mobile: false,
        }),
      ]);
      return page;
    },
    async close() {
      await cdp.send("Browser.close").catch(() => {});
      await cdp.close();
      const timeout = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await child.status;
      clearTimeout(timeout);
      await drained;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}
