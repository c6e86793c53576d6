/**
 * What every dashboard response shares: the security headers, JSON and text
 * answers, and the page's files (the only files the server ever reads).
 */

import { safeJson } from "./wire.ts";

/**
 * No inline script or style, nothing from another origin: even if some value did
 * reach the page as markup, the browser would refuse to run it.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** The security headers, a content type and any `extra` headers. */
export function headers(type: string, extra: Record<string, string> = {}): Headers {
  return new Headers({ ...SECURITY_HEADERS, "content-type": type, ...extra });
}

export function json(value: unknown, status = 200): Response {
  return new Response(safeJson(value), {
    status,
    headers: headers("application/json; charset=utf-8", { "cache-control": "no-store" }),
  });
}

export function text(
  message: string,
  status: number,
  extra: Record<string, string> = {},
): Response {
  return new Response(`${message}\n`, {
    status,
    headers: headers("text/plain; charset=utf-8", extra),
  });
}

const JS = "text/javascript";
const CSS = "text/css";
const page = (name: string) => new URL(`./static/${name}`, import.meta.url);
const uplot = (name: string) => new URL(`../node_modules/uplot/dist/${name}`, import.meta.url);

/**
 * The files the page is made of: URL path -> file and content type. Nothing else is
 * served. The page's modules import one another relatively, so all sit at the root;
 * `/format.js` and `/calendar.js` are modules the terminal uses too.
 */
const FILES: Record<string, { file: URL; type: string }> = {
  "/": { file: page("index.html"), type: "text/html" },
  "/index.html": { file: page("index.html"), type: "text/html" },
  "/app.js": { file: page("app.js"), type: JS },
  "/charts.js": { file: page("charts.js"), type: JS },
  "/panels.js": { file: page("panels.js"), type: JS },
  "/watchlist.js": { file: page("watchlist.js"), type: JS },
  "/compare.js": { file: page("compare.js"), type: JS },
  "/alerts.js": { file: page("alerts.js"), type: JS },
  "/gaps.js": { file: page("gaps.js"), type: JS },
  "/style.css": { file: page("style.css"), type: CSS },
  "/watchlist.css": { file: page("watchlist.css"), type: CSS },
  "/charts.css": { file: page("charts.css"), type: CSS },
  "/panels.css": { file: page("panels.css"), type: CSS },
  "/phone.css": { file: page("phone.css"), type: CSS },
  "/format.js": { file: new URL("../lib/format.js", import.meta.url), type: JS },
  "/indicators.js": { file: new URL("../lib/indicators.js", import.meta.url), type: JS },
  "/calendar.js": { file: new URL("../lib/calendar.js", import.meta.url), type: JS },
  "/studies.js": { file: page("studies.js"), type: JS },
  "/vendor/uPlot.esm.js": { file: uplot("uPlot.esm.js"), type: JS },
  "/vendor/uPlot.min.css": { file: uplot("uPlot.min.css"), type: CSS },
};

/** The page's files, read on first request and then kept: they never change while serving. */
export class StaticFiles {
  readonly #bodies = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

  has(path: string): boolean {
    return Object.hasOwn(FILES, path);
  }

  async serve(path: string): Promise<Response> {
    const entry = FILES[path];
    let body = this.#bodies.get(path);
    if (body === undefined) {
      body = Deno.readFile(entry.file);
      this.#bodies.set(path, body);
    }
    try {
      return new Response(await body, {
        headers: headers(`${entry.type}; charset=utf-8`, { "cache-control": "no-cache" }),
      });
    } catch (error) {
      this.#bodies.delete(path);
      const what = entry.file.pathname;
      console.error(`dashboard: cannot read ${what}: ${(error as Error).message}`);
      return text(`cannot read ${path.slice(1) || "index.html"} on the server`, 500);
    }
  }
}
