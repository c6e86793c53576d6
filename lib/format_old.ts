/**
 * Numbers, ages and clock times as the terminal views, the producer's status line
 * and the benchmark table print them: one rule each, so the same age never reads
 * "90s" in one place and "1m" in another.
 */

const count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** A whole number with thousands separators: 1234567.8 -> "1,234,568". */
export function formatCount(value: number): string {
  return count.format(value);
}

/**
 * How long ago, in the largest unit that keeps it readable: tenths of a second
 * below 10 s, then whole seconds below 2 minutes, minutes below 2 hours, hours
 * below 2 days, then days. Always rounded down: an age never reads older than it is.
 */
export function formatAge(ms: number): string {
  if (!(ms > 0)) ms = 0;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.floor(ms / 1_000)}s`;
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)}m`;
  if (ms < 172_800_000) return `${Math.floor(ms / 3_600_000)}h`;
  return `${Math.floor(ms / 86_400_000)}d`;
}

/**
 * HH:MM:SS (HH:MM without seconds) at a UTC offset in minutes; by default the
 * machine's own zone at that time.
 */
export function formatClock(
  ms: number,
  utcOffsetMinutes = -new Date(ms).getTimezoneOffset(),
  withSeconds = true,
): string {
  const iso = new Date(ms + utcOffsetMinutes * 60_000).toISOString();
  return iso.slice(11, withSeconds ? 19 : 16);
}
