import pino from 'pino';
import { printable, printableLines } from './printable.js';

/** The structured log of asp itself: object first, message second, always on stderr. */
export interface Log {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

/** Set by a standby asp process (standby-server.ts): its stderr is its client's, a stream, not its own fd 2. */
let throughStderrStream = false;

export function logThroughStderrStream(): void {
  throughStderrStream = true;
}

/** JSON lines (pino) on stderr: for --json and CI, where a machine reads the log. */
export function jsonLog(debug: boolean): Log {
  // pino escapes C0 controls as JSON does, but leaves DEL and C1 raw; printable makes those \u escapes (still JSON).
  const destination = throughStderrStream ? { write: (line: string) => process.stderr.write(line) } : pino.destination({ fd: 2, sync: true });
  const logger = pino({ level: debug ? 'debug' : 'info', base: { app: 'asp' } }, { write: (line: string) => destination.write(printable(line)) });
  return {
    info: (fields, message) => logger.info(fields, message),
    warn: (fields, message) => logger.warn(fields, message),
    error: (fields, message) => logger.error(fields, message),
    debug: (fields, message) => logger.debug(fields, message),
  };
}

/**
 * Plain `asp: ...` lines on stderr for a person at a terminal; fields are shown only with --debug. Messages carry
 * sandbox text (warnings, file names): escaped, and with their later lines indented, none passes for asp's own.
 */
export function humanLog(debug: boolean, write: (line: string) => void = (line) => process.stderr.write(line)): Log {
  const line = (prefix: string) => (fields: Record<string, unknown>, message: string) => {
    const extra = debug && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
    write(`asp: ${prefix}${printableLines(message)}${printable(extra)}\n`);
  };
  return {
    info: line(''),
    warn: line('warning: '),
    error: line('error: '),
    debug: debug ? line('debug: ') : () => {},
  };
}

export const silentLog: Log = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
