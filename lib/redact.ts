/**
 * Secrets never reach a screen or a log: Finnhub's token rides in its URL
 * (`?token=…`), and a broker URL may carry a password.
 */

/** `text` with every `token=…` query value and URL password replaced by `***`. */
export function redact(text: string): string {
  return text
    .replace(/([?&]token=)[^&#\s"']+/gi, "$1***")
    .replace(/(\/\/[^:/@\s]+:)[^@/\s]+@/g, "$1***@");
}
