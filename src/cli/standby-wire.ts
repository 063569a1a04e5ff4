import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';

/**
 * What `asp run` and a standby asp process (standby-server.ts) say to each other over the standby's Unix socket:
 * frames of one type byte, a 4-byte big-endian length, and that many bytes. The client's are its request (R, JSON),
 * a signal it got (S, its name) and an answer at the HITL gate (N); the standby's are accepted (A), declined (D, why),
 * stdout (O) and stderr (E) bytes, a question at the gate (Q, JSON) and the exit code (X), its last.
 */
export type FrameType = 'R' | 'S' | 'N' | 'A' | 'D' | 'O' | 'E' | 'Q' | 'X';

const HEADER_BYTES = 5;
/** A request holds the environment; nothing a client or a standby sends is bigger than this in one frame. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export function writeFrame(socket: Socket, type: FrameType, payload: string | Buffer = ''): boolean {
  if (socket.destroyed || !socket.writable) return false;
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(body.length, 1);
  socket.write(body.length ? Buffer.concat([header, body]) : header);
  return true;
}

/** Cuts what arrives into frames; a frame over MAX_FRAME_BYTES (or of a type not on the list) ends the reading. */
export class FrameReader {
  #buffered: Buffer = Buffer.alloc(0);
  #broken = false;

  constructor(private readonly onFrame: (type: FrameType, payload: Buffer) => void) {}

  /** False once a bad frame came: the connection is then of no use. */
  push(chunk: Buffer): boolean {
    if (this.#broken) return false;
    this.#buffered = this.#buffered.length ? Buffer.concat([this.#buffered, chunk]) : chunk;
    while (this.#buffered.length >= HEADER_BYTES) {
      const type = this.#buffered.toString('latin1', 0, 1);
      const length = this.#buffered.readUInt32BE(1);
      if (!isFrameType(type) || length > MAX_FRAME_BYTES) {
        this.#broken = true;
        return false;
      }
      if (this.#buffered.length < HEADER_BYTES + length) break;
      const payload = this.#buffered.subarray(HEADER_BYTES, HEADER_BYTES + length);
      this.#buffered = this.#buffered.subarray(HEADER_BYTES + length);
      this.onFrame(type, payload);
    }
    return true;
  }
}

const FRAME_TYPES: readonly string[] = ['R', 'S', 'N', 'A', 'D', 'O', 'E', 'Q', 'X'] satisfies FrameType[];

function isFrameType(type: string): type is FrameType {
  return FRAME_TYPES.includes(type);
}

/** What the client asks: to be `asp <args>` run as it would run itself, from its directory, with its environment. */
export interface StandbyRequest {
  version: 1;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  umask: number;
  /** The build and the node both sides run: a standby of another asp or another node declines. */
  build: string;
  execPath: string;
  execArgv: string[];
  nodeVersion: string;
  /** Whether the client's stdin, stdout and stderr are terminals, and how wide. */
  tty: { stdin: boolean; stdout: boolean; stderr: boolean };
  columns: { stdout?: number | undefined; stderr?: number | undefined };
}

/** The standby processes' sockets of one ASP_HOME. */
export function standbyDir(home: string): string {
  return path.join(home, 'pools', 'standby');
}

// A standby's directory is a private one (private-dir.ts): no other user can plant a socket there, or connect to one.
export { isPrivateDir } from '../core/private-dir.js';

/**
 * Which build of asp this process runs: the id scripts/post-build.mjs writes beside the `asp` entry it was started
 * from. Undefined when there is none (asp run from the compiled tree): such a process neither offers nor uses a standby.
 */
export function buildId(entry: string | undefined): string | undefined {
  if (!entry) return undefined;
  try {
    return readFileSync(path.join(path.dirname(realpathSync(entry)), 'build-id'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
