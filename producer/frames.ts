/**
 * Finnhub's frames as they arrive, turned into validated trades and counted
 * rejections. The live client (finnhub.ts) and replay (recording.ts) both read
 * through here, so a recorded session is read as it was live: same validation,
 * same duplicate check, same counts. Only the live client refuses symbols it did
 * not subscribe to: a recording does not say which those were.
 */

import {
  isRecord,
  LIVE_WINDOW,
  type Rejection,
  type Trade,
  validateFinnhubTrade,
} from "../lib/trade.ts";

/** Why a frame or a trade in it was refused. */
export type FrameRejection =
  | Rejection
  | "unknown-type"
  | "bad-frame"
  | "binary-frame"
  | "duplicate-frame"
  | "unsubscribed-symbol";

export type Frame =
  | { readonly type: "trade"; readonly data: readonly unknown[] }
  | { readonly type: "ping" }
  | { readonly type: "error"; readonly msg: string }
  | { readonly type: "rejected"; readonly kind: FrameRejection };

/** Parses one text frame; the trades in it are still `unknown` (see readFrame). */
export function parseFrame(text: string): Frame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Malformed JSON, and nesting deep enough to overflow the parser's stack.
    return { type: "rejected", kind: "not-json" };
  }
  if (!isRecord(parsed)) return { type: "rejected", kind: "not-an-object" };
  switch (parsed.type) {
    case "trade":
      return Array.isArray(parsed.data)
        ? { type: "trade", data: parsed.data }
        : { type: "rejected", kind: "bad-frame" };
    case "ping":
      return { type: "ping" };
    case "error":
      return {
        type: "error",
        msg: typeof parsed.msg === "string" ? parsed.msg : "(an error frame without a message)",
      };
    default:
      return { type: "rejected", kind: "unknown-type" };
  }
}

export interface FrameHandlers {
  /** Valid trades of one frame, in the frame's order. */
  onTrades(trades: Trade[], receivedAt: number): void;
  /** A refused frame or trade; `sample` is the offending text, for the log. */
  onReject(kind: FrameRejection, sample: string): void;
  onError?(msg: string): void;
  /** A keep-alive ping arrived (the feed's heartbeat reports the last one). */
  onPing?(receivedAt: number): void;
}

/** Finnhub has sent the same message three times [#143]: a repeat this soon is not a trade. */
const DUPLICATE_WINDOW_MS = 10_000;
const DUPLICATE_MEMORY = 4096;
/**
 * Characters of frame text kept for the duplicate check. Without this bound a few
 * thousand big frames (a busy market, or a hostile server) would hold hundreds of
 * megabytes; past it the oldest frames are forgotten first.
 */
const DUPLICATE_MEMORY_CHARS = 4 * 1024 * 1024;

/**
 * Turns raw frames into validated trades and counted rejections. Trades carry no
 * id, so duplicates are recognised only as a whole trade frame repeated, byte for
 * byte, within DUPLICATE_WINDOW_MS; such frames are counted as "duplicate-frame".
 * With `subscribed` (the live client), a valid trade of any other symbol is refused
 * as "unsubscribed-symbol": a server pushing symbols nobody asked for must not fill
 * the topic, nor the per-symbol maps that live as long as the process.
 */
export function createFrameReader(handlers: FrameHandlers, subscribed?: ReadonlySet<string>) {
  const recent = new Map<string, number>();
  let recentChars = 0;
  const forgetOldest = () => {
    const oldest = recent.keys().next().value!;
    recent.delete(oldest);
    recentChars -= oldest.length;
  };
  /** `receivedAt`: when the frame arrived (live) or was recorded (replay). */
  return (text: unknown, receivedAt: number): void => {
    if (typeof text !== "string") {
      handlers.onReject("binary-frame", "(a binary frame)");
      return;
    }
    const frame = parseFrame(text);
    switch (frame.type) {
      case "rejected":
        handlers.onReject(frame.kind, text);
        return;
      case "ping": // keeps the connection alive (see the dead timer); nothing to hand on
        handlers.onPing?.(receivedAt);
        return;
      case "error":
        handlers.onError?.(frame.msg);
        return;
      case "trade": {
        const seenAt = recent.get(text);
        if (seenAt !== undefined && receivedAt - seenAt <= DUPLICATE_WINDOW_MS) {
          handlers.onReject("duplicate-frame", text);
          return;
        }
        if (seenAt !== undefined) {
          recent.delete(text);
          recentChars -= text.length;
        }
        // Frames are remembered in arrival order: drop the expired ones from the front.
        while (
          recent.size > 0 && receivedAt - recent.values().next().value! > DUPLICATE_WINDOW_MS
        ) {
          forgetOldest();
        }
        if (text.length <= DUPLICATE_MEMORY_CHARS) {
          recent.set(text, receivedAt);
          recentChars += text.length;
          while (recent.size > DUPLICATE_MEMORY || recentChars > DUPLICATE_MEMORY_CHARS) {
            forgetOldest();
          }
        }
        const window = { ...LIVE_WINDOW, now: receivedAt };
        const trades: Trade[] = [];
        for (const raw of frame.data) {
          const result = validateFinnhubTrade(raw, window);
          if (typeof result === "string") handlers.onReject(result, sampleOf(raw));
          else if (subscribed && !subscribed.has(result.symbol)) {
            handlers.onReject("unsubscribed-symbol", sampleOf(raw));
          } else trades.push(result);
        }
        if (trades.length > 0) handlers.onTrades(trades, receivedAt);
      }
    }
  };
}

function sampleOf(raw: unknown): string {
  try {
    return JSON.stringify(raw) ?? String(raw);
  } catch {
    return String(raw);
  }
}
