/**
 * Server-sent events: the wire format of one event, and one client's outgoing
 * stream with a bounded buffer. The hub (hub.ts) decides what to send; this module
 * only encodes it and holds it until the client reads.
 *
 * Why a bounded buffer: a browser tab in the background, or a client on a slow
 * link, stops reading. An unbounded queue would then hold every frame the server
 * ever pushed. Here a client whose queue is full misses frames and is marked
 * stale; the hub sends it a fresh snapshot once it drains, so it loses no data,
 * only intermediate states, and never holds up the other clients.
 */

const encoder = new TextEncoder();

export interface SseEvent {
  /** `id:`, what a reconnecting EventSource sends back as Last-Event-ID. */
  readonly id?: string;
  /** `event:`, the name the page listens to; unnamed events are "message". */
  readonly event?: string;
  /** One line: JSON never contains a raw line break. */
  readonly data: string;
  /** `retry:`, the reconnect delay the browser should use, ms. */
  readonly retry?: number;
}

/** One event in SSE wire format, as bytes. A line break inside a field would end it early. */
export function encodeEvent(event: SseEvent): Uint8Array {
  for (const field of [event.id, event.event, event.data]) {
    if (field !== undefined && /[\r\n]/.test(field)) {
      throw new TypeError("an SSE field may not contain a line break");
    }
  }
  let text = "";
  if (event.retry !== undefined) text += `retry: ${event.retry}\n`;
  if (event.id !== undefined) text += `id: ${event.id}\n`;
  if (event.event !== undefined) text += `event: ${event.event}\n`;
  return encoder.encode(`${text}data: ${event.data}\n\n`);
}

/**
 * One client's stream. `send` enqueues a frame unless the queue already holds
 * `maxBufferBytes`; then the frame is dropped and the client is marked stale.
 * A frame is always accepted into an empty queue, so a snapshot larger than the
 * limit still goes out once the client has drained: the bound is
 * max(maxBufferBytes, one frame).
 */
export class SseClient {
  readonly stream: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;
  #stale = false;
  readonly #maxBufferBytes: number;
  readonly #onClose: () => void;

  constructor(maxBufferBytes: number, onClose: () => void) {
    this.#maxBufferBytes = maxBufferBytes;
    this.#onClose = onClose;
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        // The browser went away (tab closed, network gone): free everything.
        cancel: () => this.#finish(),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: maxBufferBytes }),
    );
  }

  /** Bytes waiting for the client to read them. */
  get queuedBytes(): number {
    return this.#closed ? 0 : this.#maxBufferBytes - (this.#controller.desiredSize ?? 0);
  }

  /** True after a frame was dropped, until `markFresh`: the client needs a snapshot. */
  get stale(): boolean {
    return this.#stale;
  }

  /** Enqueues a frame; false (and the client turns stale) when it was dropped. */
  send(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    const queued = this.queuedBytes;
    if (queued > 0 && queued + frame.byteLength > this.#maxBufferBytes) {
      this.#stale = true;
      return false;
    }
    this.#controller.enqueue(frame);
    return true;
  }

  /** The hub calls this after sending the snapshot that replaces what was dropped. */
  markFresh(): void {
    this.#stale = false;
  }

  /** Ends the stream from the server side (shutdown). */
  close(): void {
    if (this.#closed) return;
    try {
      this.#controller.close();
    } catch {
      // Already errored or cancelled by the reader: nothing left to close.
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
  }
}
