// @ts-check
/**
 * Wall time in a time zone, and the US regular session: the one calendar that
 * lib/market_hours.ts (is a market open?), lib/format.js (clock times in the
 * exchange's zone) and the page's session marks all use. A plain ES module: Deno
 * imports it, and the dashboard serves it to the browser as it is (`/calendar.js`).
 *
 * Offsets come from the platform's time zone data (Intl), so both daylight-saving
 * changes are honoured. Exchange holidays and early closes are not known offline.
 */

/** New York: the zone of the US session and of the forex week. */
export const NEW_YORK = "America/New_York";

/** The US regular session, minutes after New York midnight: 09:30 and 16:00, Mon–Fri. */
export const US_OPEN = 9 * 60 + 30;
export const US_CLOSE = 16 * 60;

const DAY_MS = 86_400_000;

/** @typedef {{ year: number, month: number, day: number }} CalendarDate month 1–12 */
/**
 * @typedef {CalendarDate & { weekday: number, minutes: number }} WallTime
 * weekday 0 = Sunday; minutes since local midnight
 */

/** @type {Map<string, Intl.DateTimeFormat>} */
const zoneFormats = new Map();

/**
 * The calendar date and clock in `zone` at `ms`.
 * @param {number} ms
 * @param {string} zone an IANA name: "America/New_York", "UTC"
 * @returns {WallTime}
 */
export function wallTime(ms, zone) {
  let format = zoneFormats.get(zone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
    });
    zoneFormats.set(zone, format);
  }
  /** @type {Record<string, number>} */
  const f = {};
  for (const { type, value } of format.formatToParts(ms)) f[type] = Number(value);
  const date = { year: f.year, month: f.month, day: f.day };
  return { ...date, weekday: weekdayOf(date), minutes: f.hour * 60 + f.minute };
}

/**
 * A time zone's offset from UTC at `ms`, in minutes (New York in winter: -300).
 * @param {number} ms
 * @param {string} zone an IANA name
 * @returns {number}
 */
export function zoneOffsetMinutes(ms, zone) {
  const local = wallTime(ms, zone);
  const wall = Date.UTC(local.year, local.month - 1, local.day, 0, local.minutes);
  return Math.round((wall - Math.floor(ms / 60_000) * 60_000) / 60_000);
}

/**
 * The instant (ms) of the wall time `minutes` after midnight of `date` in `zone`.
 * @param {CalendarDate} date
 * @param {number} minutes
 * @param {string} zone
 * @returns {number}
 */
export function zoneInstant(date, minutes, zone) {
  const wall = Date.UTC(date.year, date.month - 1, date.day, 0, minutes);
  // The offset at a first guess, then at the answer: right on both sides of a DST change.
  const guess = wall - zoneOffsetMinutes(wall, zone) * 60_000;
  return wall - zoneOffsetMinutes(guess, zone) * 60_000;
}

/**
 * The date `days` after `date` (calendar arithmetic, no time zone).
 * @param {CalendarDate} date
 * @param {number} days
 * @returns {CalendarDate}
 */
export function addDays(date, days) {
  const next = new Date(Date.UTC(date.year, date.month - 1, date.day + days));
  return { year: next.getUTCFullYear(), month: next.getUTCMonth() + 1, day: next.getUTCDate() };
}

/**
 * The day of the week of a date, 0 = Sunday.
 * @param {CalendarDate} date
 * @returns {number}
 */
export function weekdayOf(date) {
  return new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay();
}

/**
 * The exchange's time zone for a market (lib/market_hours.ts marketOf): New York
 * for US stocks and forex, UTC for crypto and unknown venues.
 * @param {string | null | undefined} market
 * @returns {string}
 */
export function exchangeZone(market) {
  return market === "us-stock" || market === "forex" ? NEW_YORK : "UTC";
}

/**
 * The US regular session's opens (09:30) and closes (16:00) New York time on
 * weekdays between `from` and `to` (ms, both included), oldest first; none for a
 * span over 31 days. Holidays are not known.
 * @param {number} from
 * @param {number} to
 * @returns {{ at: number, kind: "open" | "close" }[]}
 */
export function usSessionMarks(from, to) {
  /** @type {{ at: number, kind: "open" | "close" }[]} */
  const marks = [];
  if (!(to >= from) || to - from > 31 * DAY_MS) return marks;
  const first = wallTime(from, NEW_YORK);
  for (let days = 0; days <= Math.ceil((to - from) / DAY_MS) + 1; days++) {
    const date = addDays(first, days);
    const weekday = weekdayOf(date);
    if (weekday === 0 || weekday === 6) continue;
    for (const [minutes, kind] of /** @type {const} */ ([[US_OPEN, "open"], [US_CLOSE, "close"]])) {
      const at = zoneInstant(date, minutes, NEW_YORK);
      if (at >= from && at <= to) marks.push({ at, kind });
    }
  }
  return marks;
}
