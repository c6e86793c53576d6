/**
 * The token gate of a server bound beyond loopback (the shared dashboard, the
 * producer's metrics): who may read, decided once per request.
 *
 * - `Authorization: Bearer <token>`: tools, scrapers, curl.
 * - A page link with `?token=<token>` (when `page` is on): exchanged for an
 *   HttpOnly, SameSite=Lax cookie (Secure over HTTPS) and a redirect to the same
 *   URL without the token, so the token leaves the address bar and the history. The
 *   cookie holds the time it was issued and an HMAC of that time keyed by the token,
 *   never the token: the server refuses it after `SESSION_MAX_AGE_S` whatever the
 *   browser keeps, and changing the token ends every session.
 * - Comparisons are constant-time (both sides hashed, then timingSafeEqual).
 * - A wrong token (header or link) is a failed login: logged with the client's
 *   address and never the token; after `maxFailures` within `windowMs` an address
 *   gets 429 until its window ends. The table of addresses is bounded.
 *
 * The gate only decides; each server turns the verdict into its own response.
 */

import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** Shorter tokens are refused at start: a guessable token is no lock. */
export const MIN_TOKEN_LENGTH = 16;

export const SESSION_COOKIE = "market_stream_session";
/** A session lasts a week; then the link is needed again. */
export const SESSION_MAX_AGE_S = 7 * 24 * 3600;
/** A cookie issued up to this far "in the future" still passes: clocks step back. */
const SESSION_CLOCK_SLACK_S = 60;

export interface GateOptions {
  readonly token: string;
  /** The server speaks HTTPS: the cookie gets `Secure`. */
  readonly secure: boolean;
  /** Accept a `?token=` link and a session cookie (a page); otherwise Bearer only. */
  readonly page: boolean;
  /** Where failed logins are reported, one line each. */
  readonly log: (line: string) => void;
  /** Failed logins one address may make per window; the next get 429. Default 10. */
  readonly maxFailures?: number;
  /** Default 60 s. */
  readonly windowMs?: number;
  /** Addresses remembered at most. Default 10,000. */
  readonly maxClients?: number;
}

export type Verdict =
  | { readonly kind: "pass" }
  /** A good `?token=` link: set the cookie, go to `location`. */
  | { readonly kind: "login"; readonly location: string; readonly cookie: string }
  | {
    readonly kind: "denied";
    readonly status: 401 | 429;
    readonly message: string;
    readonly headers: Record<string, string>;
  };

const digest = (text: string) => createHash("sha256").update(text).digest();

/** Equal strings, in time that does not depend on where they differ or their lengths. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

function cookieValue(header: string | null, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

export class Gate {
  readonly #options: GateOptions;
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #maxClients: number;
  /** Per address: failures in the window that began at `since`. Insertion order = age. */
  readonly #failures = new Map<string, { count: number; since: number }>();
  #refused = 0;

  constructor(options: GateOptions) {
    this.#options = options;
    this.#maxFailures = options.maxFailures ?? 10;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#maxClients = options.maxClients ?? 10_000;
  }

  /** Failed logins since start (for /metrics). */
  get refused(): number {
    return this.#refused;
  }

  /** Decides one request from `address` (the client's IP). */
  check(request: Request, url: URL, address: string, now = Date.now()): Verdict {
    // Good credentials pass even from a locked address: behind a proxy or NAT, one
    // guesser must not lock every user and the scraper out.
    const authorization = request.headers.get("authorization");
    const bearer = authorization === null
      ? undefined
      : /^Bearer +(\S+) *$/i.exec(authorization)?.[1] ?? "";
    if (bearer !== undefined && sameSecret(bearer, this.#options.token)) return { kind: "pass" };
    const link = this.#options.page ? url.searchParams.get("token") : null;
    const cookie = cookieValue(request.headers.get("cookie"), SESSION_COOKIE);
    const session = this.#options.page && cookie !== undefined &&
      this.#validSession(cookie, now);
    if (link === null && session) return { kind: "pass" };
    if (link !== null && sameSecret(link, this.#options.token)) {
      const rest = new URLSearchParams(url.searchParams);
      rest.delete("token");
      const query = rest.size > 0 ? `?${rest}` : "";
      // One leading slash: "//host/" would send the browser to another site.
      const path = url.pathname.replace(/^\/+/, "/");
      return { kind: "login", location: `${path}${query}`, cookie: this.#cookie(now) };
    }
    const locked = this.#lockedFor(address, now);
    if (locked > 0) {
      return this.#deny(429, "too many failed logins from this address: try again later", {
        "retry-after": String(Math.ceil(locked / 1000)),
      });
    }
    if (bearer !== undefined) {
      return this.#fail(address, "a wrong Authorization: Bearer token", now);
    }
    if (!this.#options.page) return this.#deny(401, "send Authorization: Bearer <token>");
    if (link !== null) return this.#fail(address, "a wrong ?token= link", now);
    // A stale cookie (expired, or the token changed) is no attack: 401, not counted.
    return this.#deny(
      401,
      "this dashboard is shared with a token: open the link with ?token=<token> that you " +
        "were given, or send Authorization: Bearer <token>",
    );
  }

  /** `<issued, s since the epoch>.<HMAC of it keyed by the token>` */
  #sessionFor(issuedS: number): string {
    const mac = createHmac("sha256", this.#options.token)
      .update(`market-stream session v2 ${issuedS}`).digest("base64url");
    return `${issuedS}.${mac}`;
  }

  #validSession(cookie: string, now: number): boolean {
    const issuedS = Number(/^(\d{1,12})\./.exec(cookie)?.[1] ?? NaN);
    if (!Number.isSafeInteger(issuedS)) return false;
    const ageS = now / 1000 - issuedS;
    if (ageS > SESSION_MAX_AGE_S || ageS < -SESSION_CLOCK_SLACK_S) return false;
    return sameSecret(cookie, this.#sessionFor(issuedS));
  }

  #cookie(now: number): string {
    const secure = this.#options.secure ? "; Secure" : "";
    const value = this.#sessionFor(Math.floor(now / 1000));
    return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${SESSION_MAX_AGE_S}; ` +
      // Lax, not Strict: a link clicked in a chat or a mail is a navigation from another
      // site, and a Strict cookie set by its redirect would not come back on it. The
      // dashboard changes nothing on GET; its one change (POST/DELETE /api/alerts)
      // takes same-origin requests only (dashboard/alert_routes.ts), and Lax sends no
      // cookie on another site's POST anyway.
      `HttpOnly; SameSite=Lax${secure}`;
  }

  #deny(status: 401 | 429, message: string, headers: Record<string, string> = {}): Verdict {
    const challenge: Record<string, string> = status === 401
      ? { "www-authenticate": 'Bearer realm="market-stream"' }
      : {};
    return { kind: "denied", status, message, headers: { ...challenge, ...headers } };
  }

  /** Ms until `address` may try again; 0 when it may now. */
  #lockedFor(address: string, now: number): number {
    const entry = this.#failures.get(address);
    if (entry === undefined || entry.count < this.#maxFailures) return 0;
    return Math.max(0, entry.since + this.#windowMs - now);
  }

  #fail(address: string, what: string, now: number): Verdict {
    this.#refused++;
    let entry = this.#failures.get(address);
    if (entry === undefined || now - entry.since >= this.#windowMs) {
      this.#failures.delete(address);
      entry = { count: 0, since: now };
      this.#failures.set(address, entry);
      this.#forgetOld(now);
    }
    entry.count++;
    const seconds = Math.round(this.#windowMs / 1000);
    const locked = entry.count >= this.#maxFailures ? `; answering 429 to it for ${seconds} s` : "";
    this.#options.log(
      `refused a login from ${address}: ${what} (${entry.count} in ${seconds} s)${locked}`,
    );
    return this.#deny(401, "wrong token");
  }

  /** Bounded memory: expired windows go first, then the oldest. */
  #forgetOld(now: number): void {
    if (this.#failures.size <= this.#maxClients) return;
    for (const [address, entry] of this.#failures) {
      if (now - entry.since >= this.#windowMs) this.#failures.delete(address);
    }
    for (const address of this.#failures.keys()) {
      if (this.#failures.size <= this.#maxClients) break;
      this.#failures.delete(address);
    }
  }
}
