/**
 * Runs a command and watches its peak resident memory from outside, the way an operator would: VmHWM in
 * /proc/<pid>/status ("high water mark", the kernel's own peak RSS), sampled until the process exits. Used by
 * bench/output-flood and by the hostile suite to prove that a flooding step cannot blow up the supervisor.
 * Output is kept as a bounded tail, so the watcher itself never holds what the command printed.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface WatchedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Highest VmHWM seen, in bytes (0 when the process ended before the first sample). */
  peakRssBytes: number;
  samples: number;
  durationMs: number;
  /** How many bytes the command wrote, and the last `tailBytes` of each stream. */
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTail: string;
  stderrTail: string;
}

const SAMPLE_MS = 50;

/** A memory figure of /proc/<pid>/status (VmHWM, VmRSS, ...) of a live process in bytes, or undefined once it is gone. Linux only. */
export function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function runWatchingRss(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; tailBytes?: number } = {}): Promise<WatchedRun> {
  const tailBytes = options.tailBytes ?? 64 * 1024;
  const started = Date.now();
  const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let peak = 0;
  let samples = 0;
  const sample = () => {
    const hwm = child.pid === undefined ? undefined : statusBytes(child.pid, 'VmHWM');
    if (hwm === undefined) return;
    samples += 1;
    peak = Math.max(peak, hwm);
  };
  const timer = setInterval(sample, SAMPLE_MS);
  const streams = { stdout: { bytes: 0, tail: Buffer.alloc(0) }, stderr: { bytes: 0, tail: Buffer.alloc(0) } };
  for (const name of ['stdout', 'stderr'] as const) {
    child[name].on('data', (chunk: Buffer) => {
      const stream = streams[name];
      stream.bytes += chunk.length;
      stream.tail = Buffer.concat([stream.tail, chunk]).subarray(-tailBytes);
    });
  }
  return new Promise((resolve, reject) => {
    child.on('error', (error) => {
      clearInterval(timer);
      reject(error);
    });
    // 'exit' comes before the streams close: take one last sample while /proc/<pid> may still be there.
    child.on('exit', sample);
    child.on('close', (code, signal) => {
      clearInterval(timer);
      resolve({
        code,
        signal,
        peakRssBytes: peak,
        samples,
        durationMs: Date.now() - started,
        stdoutBytes: streams.stdout.bytes,
        stderrBytes: streams.stderr.bytes,
        stdoutTail: streams.stdout.tail.toString('utf8'),
        stderrTail: streams.stderr.tail.toString('utf8'),
      });
    });
  });
}
