/**
 * A fake Finnhub trade websocket for the tests: Deno.serve + Deno.upgradeWebSocket
 * on 127.0.0.1, port 0, behind a tiny TCP relay so a test can also cut the
 * connection abruptly (no close frame), as a dying network does.
 *
 * It checks the token (401 at the handshake otherwise), can refuse handshakes with
 * 503 for a while (refuseFor), records every subscribe,
 * answers too many subscribes with Finnhub's error frame, and plays on command:
 * pings, multi-symbol trade frames, error frames, a close mid-stream, a drop,
 * silence, malformed frames, and a stream of unique trades at a given rate.
 *
 * Every trade it sends is unique (its volume is a sequence number) and is kept in
 * `sent`, in order, so a test can compare exactly what reached Kafka.
 */

export interface WireTrade {
  s: string;
  p: number;
  t: number;
  v: number;
  c?: string[];
}

export interface FakeFinnhubOptions {
  token?: string;
  /** Subscriptions per connection before the server answers with an error frame. */
  maxSymbols?: number;
  /** Finnhub drops the older connection when a second one uses the same key [#158]. */
  exclusive?: boolean;
}

interface Client {
  socket: WebSocket;
  symbols: string[];
}

export interface StreamOptions {
  symbols: readonly string[];
  /** Trades per second. */
  rate: number;
  /** Stop after this many trades. */
  count: number;
  /** Largest frame, in trades. */
  perFrame?: number;
}

export class FakeFinnhub {
  readonly token: string;
  /** Every valid trade sent to a client, in order. */
  readonly sent: WireTrade[] = [];
  /** Every text frame sent, in order. */
  readonly frames: string[] = [];
  /** Subscribed symbols per accepted connection, in order of connection. */
  readonly subscribes: string[][] = [];
  /** Handshakes refused with 401. */
  unauthorized = 0;
  /** Handshakes refused with 503 (see refuseFor). */
  refused = 0;
  /** Until this time (ms) every handshake is answered 503, as a server restarting does. */
  #refuseUntil = 0;
  /** While silent, nothing is sent: no trades, no pings, no close. */
  silent = false;
  /** While paused, streams hold their trades (pings and single sends still go out). */
  paused = false;
  /** Connections served by serveRawNext (a hand-made websocket), so far. */
  rawConnections = 0;

  #options: FakeFinnhubOptions;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #listener: Deno.TcpListener;
  #relays = new Set<{ front: Deno.TcpConn; back: Deno.TcpConn; done: Promise<unknown> }>();
  #accepting: Promise<void>;
  #clients: Client[] = [];
  #seq = 0;
  #pinger: ReturnType<typeof setInterval> | undefined;
  #streams = new Set<() => void>();
  #waiters = new Set<() => void>();
  #rawNext: Uint8Array[] | undefined;
  #raws = new Set<Promise<void>>();

  constructor(options: FakeFinnhubOptions = {}) {
    this.#options = options;
    this.token = options.token ?? "test-token-0123456789";
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => this.#handle(request),
    );
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** The URL to give the producer (FINNHUB_WS_URL). */
  get url(): string {
    return `ws://127.0.0.1:${this.#listener.addr.port}`;
  }

  /** Accepted websocket connections so far. */
  get connections(): number {
    return this.subscribes.length;
  }

  /** Symbols subscribed on the newest connection. */
  get current(): readonly string[] {
    return this.#clients.at(-1)?.symbols ?? [];
  }

  /** Answers every handshake for the next `ms` with HTTP 503. */
  refuseFor(ms: number): void {
    this.#refuseUntil = Date.now() + ms;
  }

  #handle(request: Request): Response {
    if (Date.now() < this.#refuseUntil) {
      this.refused++;
      this.#notify();
      return new Response("Service Unavailable", { status: 503 });
    }
    const token = new URL(request.url).searchParams.get("token");
    if (token !== this.token) {
      this.unauthorized++;
      this.#notify();
      return new Response("Unauthorized", { status: 401 });
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    const client: Client = { socket, symbols: [] };
    socket.onopen = () => {
      if (this.#options.exclusive ?? true) {
        for (const old of this.#clients) old.socket.close(1000, "another connection");
      }
      this.#clients.push(client);
      this.subscribes.push(client.symbols);
      this.#notify();
    };
    socket.onmessage = (event) => {
      let message: { type?: string; symbol?: string };
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === "subscribe" && typeof message.symbol === "string") {
        client.symbols.push(message.symbol);
        if (client.symbols.length > (this.#options.maxSymbols ?? 50)) {
          this.#send(
            client,
            JSON.stringify({ type: "error", msg: "Subscribing to too many symbols" }),
          );
        }
        this.#notify();
      }
    };
    const remove = () => {
      this.#clients = this.#clients.filter((other) => other !== client);
      this.#notify();
    };
    socket.onclose = remove;
    socket.onerror = remove;
    return response;
  }

  async #accept(): Promise<void> {
    for await (const front of this.#listener) {
      if (this.#rawNext !== undefined) {
        const raw = this.#serveRaw(front, this.#rawNext);
        this.#rawNext = undefined;
        this.#raws.add(raw);
        raw.finally(() => this.#raws.delete(raw));
        continue;
      }
      let back: Deno.TcpConn;
      try {
        back = await Deno.connect({ hostname: "127.0.0.1", port: this.#server.addr.port });
      } catch {
        front.close();
        continue;
      }
      const relay = {
        front,
        back,
        done: Promise.allSettled([
          front.readable.pipeTo(back.writable),
          back.readable.pipeTo(front.writable),
        ]),
      };
      this.#relays.add(relay);
      relay.done.then(() => this.#relays.delete(relay));
    }
  }

  /**
   * The next connection is answered by a hand-made websocket that sends each of
   * `payloads` as a text frame byte for byte (invalid UTF-8 included, which no
   * websocket library would send), then waits for the client to give up on it.
   */
  serveRawNext(payloads: Uint8Array[]): void {
    this.#rawNext = payloads;
  }

  async #serveRaw(conn: Deno.TcpConn, payloads: Uint8Array[]): Promise<void> {
    this.rawConnections++;
    this.#notify();
    const encoder = new TextEncoder();
    try {
      const buffer = new Uint8Array(16 * 1024);
      let request = "";
      while (!request.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) return;
        request += new TextDecoder().decode(buffer.subarray(0, n));
      }
      const key = /sec-websocket-key:\s*(\S+)/i.exec(request)?.[1] ?? "";
      const digest = await crypto.subtle.digest(
        "SHA-1",
        encoder.encode(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`),
      );
      const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
      await conn.write(encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ));
      for (const payload of payloads) {
        // FIN + text opcode; a server's frames are not masked; 16-bit length up to 64 KiB.
        const header = payload.length < 126
          ? [0x81, payload.length]
          : [0x81, 126, payload.length >> 8, payload.length & 0xff];
        await conn.write(new Uint8Array([...header, ...payload]));
      }
      // The client should fail the connection now: wait for it (5 s at most).
      const reading = (async () => {
        while (await conn.read(buffer) !== null) { /* drain */ }
      })().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([reading, new Promise((resolve) => timer = setTimeout(resolve, 5_000))]);
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* already closed */ }
      await reading;
    } catch {
      // The client hung up: that is the point.
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  #send(client: Client, text: string): boolean {
    if (this.silent || client.socket.readyState !== WebSocket.OPEN) return false;
    client.socket.send(text);
    this.frames.push(text);
    return true;
  }

  /** Sends a text frame to every open client; true when at least one got it. */
  sendRaw(text: string): boolean {
    let any = false;
    for (const client of this.#clients) any = this.#send(client, text) || any;
    return any;
  }

  /** A binary frame (Finnhub sends text only; a client must refuse these). */
  sendBinary(bytes: Uint8Array): boolean {
    let any = false;
    for (const client of this.#clients) {
      if (this.silent || client.socket.readyState !== WebSocket.OPEN) continue;
      client.socket.send(bytes);
      any = true;
    }
    return any;
  }

  /** One trade frame; the trades count as sent only if a client got the frame. */
  sendTrades(trades: WireTrade[]): boolean {
    const delivered = this.sendRaw(JSON.stringify({ type: "trade", data: trades }));
    if (delivered) this.sent.push(...trades);
    return delivered;
  }

  /** `count` fresh unique trades spread over `symbols`, in one frame. */
  sendUnique(symbols: readonly string[], count: number): WireTrade[] {
    const trades = this.makeTrades(symbols, count);
    return this.sendTrades(trades) ? trades : [];
  }

  /** Unique trades, not sent: the volume is a sequence number no other trade has. */
  makeTrades(symbols: readonly string[], count: number): WireTrade[] {
    const now = Date.now();
    return Array.from({ length: count }, () => {
      const seq = ++this.#seq;
      return {
        s: symbols[seq % symbols.length],
        p: 100 + (seq % 1000) / 100,
        t: now,
        v: seq,
        c: ["1"],
      };
    });
  }

  ping(): boolean {
    return this.sendRaw('{"type":"ping"}');
  }

  pingEvery(ms: number): void {
    clearInterval(this.#pinger);
    this.#pinger = ms > 0 ? setInterval(() => this.ping(), ms) : undefined;
  }

  error(msg: string): boolean {
    return this.sendRaw(JSON.stringify({ type: "error", msg }));
  }

  /** A clean close from the server, as on a Finnhub restart. */
  closeClients(code = 1001, reason = "server restart"): void {
    for (const client of this.#clients) client.socket.close(code, reason);
  }

  /** Cuts every TCP connection: no close frame, as when the network dies. */
  async drop(): Promise<void> {
    const relays = [...this.#relays];
    for (const relay of relays) {
      for (const conn of [relay.front, relay.back]) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    }
    await Promise.all(relays.map((relay) => relay.done));
  }

  /**
   * Sends `count` unique trades at `rate` per second, several symbols per frame,
   * to whichever client is connected; paused while silent or without a client.
   * Resolves when all were sent (or stopStreams was called).
   */
  stream(options: StreamOptions): Promise<void> {
    const perFrame = options.perFrame ?? 200;
    const tickMs = 10;
    let sentCount = 0;
    let credit = 0;
    return new Promise((resolve) => {
      const stop = () => {
        clearInterval(timer);
        this.#streams.delete(stop);
        resolve();
      };
      const timer = setInterval(() => {
        credit = Math.min(credit + options.rate * tickMs / 1000, options.rate);
        while (credit >= 1 && sentCount < options.count) {
          // Like Finnhub, trades go only to a connection subscribed to their symbols.
          const ready = this.#clients.some((client) =>
            options.symbols.every((symbol) => client.symbols.includes(symbol))
          );
          if (this.silent || this.paused || !ready) break;
          const n = Math.min(Math.floor(credit), perFrame, options.count - sentCount);
          if (this.sendUnique(options.symbols, n).length === 0) break;
          sentCount += n;
          credit -= n;
        }
        if (sentCount >= options.count) stop();
      }, tickMs);
      this.#streams.add(stop);
    });
  }

  stopStreams(): void {
    for (const stop of [...this.#streams]) stop();
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Waits until `predicate` holds (checked on every server event and every 20 ms). */
  waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const cleanup = () => {
        clearTimeout(timeout);
        clearInterval(poll);
        this.#waiters.delete(check);
      };
      const timeout = setTimeout(() => {
        cleanup();
        reject(new Error(`fake finnhub: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const poll = setInterval(check, 20);
      this.#waiters.add(check);
    });
  }

  /** Waits for connection number `n` (1-based) to have subscribed to `symbols`. */
  waitForSubscribed(n: number, symbols: readonly string[], timeoutMs = 10_000): Promise<void> {
    return this.waitFor(
      () => this.connections >= n && symbols.every((s) => this.subscribes[n - 1].includes(s)),
      `connection ${n} to subscribe to ${symbols.join(",")}`,
      timeoutMs,
    );
  }

  async close(): Promise<void> {
    this.stopStreams();
    this.pingEvery(0);
    for (const client of this.#clients) client.socket.close(1001, "fake shutting down");
    await this.drop();
    this.#listener.close();
    await this.#accepting.catch(() => {});
    await Promise.all([...this.#raws]);
    await this.#server.shutdown();
  }
}
