import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linkedPipeline, privateRepo, REACHING } from '../fixtures/hostile/reaching-repos.js';
import { ESCAPES, terminalEscapes } from '../fixtures/hostile/terminal-escapes.js';
import { dockerAvailable, leftovers } from '../helpers/docker.js';
import { allText } from '../helpers/host-checks.js';

const main = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');

interface RawRun {
  code: number | null;
  /** Exactly the bytes asp wrote, undecoded. */
  stdout: Buffer;
  stderr: Buffer;
}

/** Runs the built CLI and keeps its output as bytes: the point is what reaches the terminal, byte for byte. */
function aspRaw(args: string[], env: Record<string, string>): Promise<RawRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
  });
}

/** Bytes a terminal acts on: C0 controls but tab and newline (ESC, BEL, CR...), DEL, and C1 as UTF-8 (C2 80..9F). */
function terminalControls(bytes: Buffer): string[] {
  const found: string[] = [];
  for (let i = 0; i < bytes.length; i += 1) {
    const byte = bytes[i]!;
    if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a) || byte === 0x7f) found.push(`0x${byte.toString(16)} at ${i}`);
    if (byte === 0xc2 && bytes[i + 1]! >= 0x80 && bytes[i + 1]! <= 0x9f) found.push(`U+00${bytes[i + 1]!.toString(16)} at ${i}`);
  }
  return found;
}

function filesNamed(dir: string, name: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name === name)
    .map((entry) => path.join(entry.parentPath, entry.name));
}

/**
 * Text and files from repositories and sandboxes, through the real CLI and the real daemon (issue 14, items 4–6):
 * what asp prints is checked as the bytes it wrote, what it keeps (events.jsonl) as the bytes the step wrote.
 */
describe.skipIf(!dockerAvailable)('untrusted text and files, through the real CLI', () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'asp-untrusted-'));
  let counter = 0;
  const scratch = () => {
    const dir = path.join(base, `run-${(counter += 1)}`);
    mkdirSync(dir);
    return { ASP_WORKSPACES: path.join(dir, 'workspaces'), ASP_HOME: path.join(dir, 'home') };
  };

  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  describe('escape sequences from a step reach neither stdout nor stderr raw; events.jsonl keeps them', () => {
    it.each([
      ['at a terminal (human log, step output on stdout)', []],
      ['with --json (pino log and step output on stderr, the result on stdout)', ['--json']],
    ])('%s', async (_mode, flags) => {
      const fixture = terminalEscapes();
      const env = scratch();
      const result = await aspRaw(['run', '--repo', fixture.repo, '--step', `escapes=${fixture.steps?.[0]?.run ?? ''}`, '--id', 'escapes', ...flags], env);
      expect(result.code, result.stderr.toString()).toBe(0);
      expect(terminalControls(result.stdout)).toEqual([]);
      expect(terminalControls(result.stderr)).toEqual([]);

      const printed = flags.length ? result.stderr.toString() : result.stdout.toString();
      // Shown, escaped, after their prefix: the \r did not overwrite "[escapes] ".
      expect(printed).toContain('[escapes] \\x1b[31mred\\x1b[0m\n');
      expect(printed).toContain('[escapes] \\x1b]52;c;cHduZWQ=\\x07\n');
      expect(printed).toContain('[escapes] \\u009b2J\n');
      expect(printed).toContain('[escapes] harmless\\r[asp] all tests passed\n');
      expect(printed).toContain('[escapes] no newline at the end\\r\\x1b[2K\n');
      expect(printed).toMatch(/\[escapes\] to stderr \\x1b\]0;err-title\\x07 and\\r\[asp\] forged\n/);
      // The symlink with an escape in its name is refused, and its name is shown escaped in the warning.
      if (flags.length) {
        // pino's JSON escapes it (\u001b, \r) and keeps its value exactly, for whatever machine reads the log.
        const messages = result.stderr
          .toString()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => (JSON.parse(line) as { msg: string }).msg);
        expect(messages).toContainEqual(expect.stringContaining('not copied out of the sandbox: .asp/link\u001b[2J\r.txt'));
      } else {
        expect(result.stderr.toString()).toContain('asp: warning: not copied out of the sandbox: .asp/link\\x1b[2J\\r.txt');
      }

      // The raw bytes stay where the record is kept.
      const events = filesNamed(env.ASP_WORKSPACES, 'events.jsonl');
      expect(events.length).toBeGreaterThan(0);
      const data = readFileSync(events[0]!, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { type?: string; data?: string })
        .filter((event) => event.type === 'step.log')
        .map((event) => event.data)
        .join('');
      for (const raw of Object.values(ESCAPES)) expect(data).toContain(raw);
      // The plain file with an escape in its name came out under its raw name.
      expect(filesNamed(env.ASP_WORKSPACES, 'file\u001b]0;file-title\u0007.txt')).toHaveLength(1);
    });
  });

  describe("a repository's asp.pipeline.json linked out of the clone is refused, echoing nothing of the target", () => {
    const outside = mkdtempSync(path.join(os.tmpdir(), 'asp-outside-'));
    const secret = `shadow-${Date.now()}-never-printed`;
    writeFileSync(path.join(outside, 'shadow'), `root:${secret}:19000:0:99999:7:::\n`);
    writeFileSync(path.join(outside, 'other.json'), JSON.stringify({ steps: [{ name: 'elsewhere', run: `echo ran-${secret}` }] }));

    it.each([
      ['a file holding a secret', 'shadow'],
      ['another valid pipeline', 'other.json'],
    ])('linked to %s', async (_what, name) => {
      const env = scratch();
      const result = await aspRaw(['run', '--repo', linkedPipeline(path.join(outside, name)), '--task', 'follow the link'], env);
      const stderr = result.stderr.toString();
      expect(result.code, stderr).toBe(2);
      expect(stderr).toContain('asp: error: asp.pipeline.json in the repository is a symbolic link');
      expect(
        stderr
          .trim()
          .split('\n')
          .filter((line) => line.startsWith('asp: error:')),
      ).toHaveLength(1);
      for (const text of [result.stdout.toString(), stderr, allText(env.ASP_WORKSPACES), allText(env.ASP_HOME)]) {
        expect(text).not.toContain(secret);
        expect(text).not.toContain('elsewhere');
      }
    });
  });

  describe('a local repository reaching into another on the host is refused before anything is made', () => {
    it.each([
      ['a plain clone', []],
      ['--depth 1', ['--depth', '1']],
      ['--filter blob:none', ['--filter', 'blob:none']],
    ])('alternates and a symlinked ref, with %s', async (_shape, flags) => {
      const target = privateRepo();
      const env = scratch();
      const hostile = REACHING['alternates and a symlinked ref'](target);
      const result = await aspRaw(['run', '--repo', hostile, '--step', 'leak=git log --all --oneline; cat SECRET.txt', ...flags], env);
      const stderr = result.stderr.toString();
      expect(result.code, stderr).toBe(2);
      expect(stderr).toBe(
        `asp: error: repository ${hostile} reaches outside itself: objects/info/alternates borrows objects from another repository — if it is your own repository, make a self-contained copy first; otherwise do not run it (git repack -a -d, then delete objects/info/alternates)\n`,
      );
      expect(result.stdout.toString()).toBe('');
      expect(existsSync(env.ASP_WORKSPACES) ? readdirSync(env.ASP_WORKSPACES) : []).toEqual([]);
      expect(allText(env.ASP_HOME)).not.toContain(target.secret);
    });
  });
});
