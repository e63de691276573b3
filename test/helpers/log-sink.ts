import { Writable } from 'node:stream';

export type LogLine = Record<string, unknown> & { level: number; msg?: string };

/** A pino destination that keeps every line, raw and parsed, for assertions. */
export class LogSink extends Writable {
  readonly raw: string[] = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.raw.push(line);
    cb();
  }

  get lines(): LogLine[] {
    return this.raw.map((l) => JSON.parse(l) as LogLine);
  }

  /** Lines whose fields include all of `match`. */
  find(match: Record<string, unknown>): LogLine[] {
    return this.lines.filter((l) => Object.entries(match).every(([k, v]) => l[k] === v));
  }

  get text(): string {
    return this.raw.join('\n');
  }
}
