/**
 * Text streams as lines, in time linear in their length: a chunk is scanned once,
 * and a line that spans chunks is joined once, when its end arrives (joining the
 * rest onto every new chunk would be quadratic on a long line).
 */

/** Splits text into lines on "\n", without it; a last line without "\n" comes out at the end. */
export class LineSplitter extends TransformStream<string, string> {
  constructor() {
    let pieces: string[] = [];
    super({
      transform(chunk, controller) {
        let start = 0;
        for (let end = chunk.indexOf("\n"); end >= 0; end = chunk.indexOf("\n", start)) {
          pieces.push(chunk.slice(start, end));
          controller.enqueue(pieces.length === 1 ? pieces[0] : pieces.join(""));
          pieces = [];
          start = end + 1;
        }
        if (start < chunk.length) pieces.push(chunk.slice(start));
      },
      flush(controller) {
        if (pieces.length > 0) controller.enqueue(pieces.join(""));
      },
    });
  }
}

/** The lines of a byte stream (UTF-8). */
export function lines(bytes: ReadableStream<Uint8Array>): ReadableStream<string> {
  return bytes.pipeThrough(new TextDecoderStream()).pipeThrough(new LineSplitter());
}
