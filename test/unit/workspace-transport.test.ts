import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdtempSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
import { packForSandbox } from '../../src/workspace/workspace-tar.js';
import { packTree } from '../../src/workspace/tar-pack.js';
import { encodeHostMessage, HostFrameReader, MAX_FRAME_BYTES, MAX_HOST_LINE_BYTES, type HostMessage } from '../../src/protocol/host-messages.js';
import { ARTIFACTS_STREAM_MAX_BYTES, type SandboxTask } from '../../src/protocol/messages.js';
import { parseProtocolLine } from '../../src/protocol/parse.js';
import { ArtifactStream } from '../../src/supervisor/artifact-stream.js';
import { feedSandbox } from '../../src/supervisor/workspace-feed.js';
import { HostInput } from '../../sandbox/host-input.js';
import { STEP_GID, STEP_UID } from '../../sandbox/step-user.js';

const task: SandboxTask = {
  taskId: 't1',
  task: 'demo',
  steps: [{ name: 'test', run: 'true', timeoutMs: 1000 }],
  deadlineAt: 0,
  outputCapBytes: 1024,
  diskLimitBytes: 1024 ** 3,
  baseCommit: 'a'.repeat(40),
  branch: 'asp/t1',
  secretEnv: [],
};

const scratch: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-transport-'));
  scratch.push(dir);
  return dir;
}
/** A dir the workspace tar unpacks into: as root, the runner unpacks it as the step user (uid 1000), who must own it. */
function stepDir(): string {
  const dir = tempDir();
  if (process.getuid?.() === 0) chownSync(dir, STEP_UID, STEP_GID);
  return dir;
}
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function read(chunks: Buffer[]): { messages: HostMessage[]; data: Buffer } {
  const messages: HostMessage[] = [];
  const data: Buffer[] = [];
  const reader = new HostFrameReader(
    (message) => messages.push(message),
    (bytes) => data.push(Buffer.from(bytes)),
  );
  for (const chunk of chunks) reader.push(chunk);
  return { messages, data: Buffer.concat(data) };
}

describe('host → sandbox frames', () => {
  const raw = Buffer.from([0x0a, 0x00, 0xff, 0x7b, 0x0a, 0x41]); // newlines and braces inside the raw bytes
  const stream = Buffer.concat([
    Buffer.from(encodeHostMessage({ type: 'task', task })),
    Buffer.from(encodeHostMessage({ type: 'workspace.data', bytes: raw.length })),
    raw,
    Buffer.from(encodeHostMessage({ type: 'workspace.end' })),
    Buffer.from(encodeHostMessage({ type: 'model.response', id: 'm1', status: 200, body: { ok: 1 } })),
  ]);

  it('reads messages and raw bytes in order, however the stream is cut', () => {
    const whole = read([stream]);
    expect(whole.messages.map((message) => message.type)).toEqual(['task', 'workspace.data', 'workspace.end', 'model.response']);
    expect(whole.data).toEqual(raw);
    expect(whole.messages[0]).toEqual({ type: 'task', task });
    // One byte at a time: every cut through a line and through the raw bytes.
    const bytewise = read([...stream].map((byte) => Buffer.from([byte])));
    expect(bytewise).toEqual(whole);
  });

  it('skips a malformed line and an over-long one, and goes on', () => {
    const long = Buffer.alloc(MAX_HOST_LINE_BYTES + 10, 0x61);
    const { messages } = read([Buffer.from('not json\n'), long, Buffer.from('\n'), Buffer.from(encodeHostMessage({ type: 'workspace.end' }))]);
    expect(messages).toEqual([{ type: 'workspace.end' }]);
  });

  it.each([
    ['a negative size', '{"asp":1,"type":"workspace.data","bytes":-1}'],
    ['a fractional size', '{"asp":1,"type":"workspace.data","bytes":1.5}'],
    ['a size over the frame limit', `{"asp":1,"type":"workspace.data","bytes":${MAX_FRAME_BYTES + 1}}`],
    ['a task without steps', '{"asp":1,"type":"task","task":{}}'],
    ['an untagged task', `{"type":"task","task":${JSON.stringify(task)}}`],
  ])('ignores %s', (_what, line) => {
    expect(read([Buffer.from(`${line}\n`)]).messages).toEqual([]);
  });
});

describe('the workspace tar', () => {
  it('carries long names, long link targets, big files and non-ASCII names exactly, owned by the sandbox user', async () => {
    const source = tempDir();
    const deep = path.join('repo', 'a'.repeat(60), 'b'.repeat(60), 'c'.repeat(60)); // over 100 bytes: ustar prefix
    const longName = 'n'.repeat(240); // one component over 100 bytes: a PAX path
    mkdirSync(path.join(source, deep), { recursive: true });
    writeFileSync(path.join(source, deep, 'file.txt'), 'deep\n');
    writeFileSync(path.join(source, 'repo', longName), 'long\n');
    writeFileSync(path.join(source, 'repo', 'naïve-日本.txt'), 'utf8\n');
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
    writeFileSync(path.join(source, 'repo', 'big.bin'), big);
    writeFileSync(path.join(source, 'repo', 'empty'), '');
    symlinkSync(`${'../'.repeat(3)}${'t'.repeat(150)}`, path.join(source, 'repo', 'far-link'));

    const headers: Array<{ name: string; uid: number; uname: string; type: string; linkname?: string | null }> = [];
    const extract = tarStream.extract();
    extract.on('entry', (header, stream, next) => {
      headers.push({ name: header.name, uid: header.uid ?? -1, uname: header.uname ?? '', type: header.type ?? '', linkname: header.linkname });
      stream.on('end', next);
      stream.resume();
    });
    await pipeline(packForSandbox(source, ['repo']), extract);
    expect(headers.every((header) => header.uid === 1000 && header.uname === 'asp')).toBe(true);
    expect(headers.map((header) => header.name)).toEqual(expect.arrayContaining([`${deep}/file.txt`, `repo/${longName}`, 'repo/naïve-日本.txt', 'repo/big.bin']));
    expect(headers.find((header) => header.name === 'repo/far-link')).toMatchObject({ type: 'symlink', linkname: `${'../'.repeat(3)}${'t'.repeat(150)}` });

    // GNU tar, as in the sandbox, reads it the same way.
    const target = tempDir();
    execFileSync('tar', ['-x', '-p', '--no-same-owner', '-f', '-', '-C', target], { input: await collect(packForSandbox(source, ['repo'])) });
    expect(readFileSync(path.join(target, deep, 'file.txt'), 'utf8')).toBe('deep\n');
    expect(readFileSync(path.join(target, 'repo', longName), 'utf8')).toBe('long\n');
    expect(readFileSync(path.join(target, 'repo', 'naïve-日本.txt'), 'utf8')).toBe('utf8\n');
    expect(readFileSync(path.join(target, 'repo', 'big.bin')).equals(big)).toBe(true);
    expect(readFileSync(path.join(target, 'repo', 'empty')).length).toBe(0);
    expect(readlinkSync(path.join(target, 'repo', 'far-link'))).toBe(`${'../'.repeat(3)}${'t'.repeat(150)}`);
  });

  it('fails on a named entry that does not exist', async () => {
    await expect(collect(packForSandbox(tempDir(), ['missing']))).rejects.toThrow(/ENOENT/);
  });
});

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}

describe('the runner side: HostInput', () => {
  it('unpacks the workspace the host packed, keeping modes and symlinks, and passes model answers on', async () => {
    const source = tempDir();
    mkdirSync(path.join(source, 'repo', 'bin'), { recursive: true });
    writeFileSync(path.join(source, 'repo', 'README.md'), 'hello\n');
    writeFileSync(path.join(source, 'repo', 'bin', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    symlinkSync('README.md', path.join(source, 'repo', 'LINK.md'));
    mkdirSync(path.join(source, '.asp'));
    writeFileSync(path.join(source, '.asp', 'task.json'), '{}');
    const target = stepDir();

    const stdin = new PassThrough();
    const input = new HostInput(stdin, target, tempDir());
    const answers: HostMessage[] = [];
    input.listen(
      (message) => answers.push(message),
      () => {},
    );
    const fed = feedSandbox(stdin, task, packForSandbox(source, ['repo', '.asp/task.json']));
    expect(await input.task).toEqual(task);
    await input.workspace;
    await fed;
    stdin.write(encodeHostMessage({ type: 'model.chunk', id: 'm1', data: { x: 1 } }));
    await new Promise((resolve) => setImmediate(resolve));

    expect(readFileSync(path.join(target, 'repo', 'README.md'), 'utf8')).toBe('hello\n');
    expect(statSync(path.join(target, 'repo', 'bin', 'run.sh')).mode & 0o777).toBe(0o755);
    expect(readlinkSync(path.join(target, 'repo', 'LINK.md'))).toBe('README.md');
    expect(readFileSync(path.join(target, '.asp', 'task.json'), 'utf8')).toBe('{}');
    expect(answers).toEqual([{ type: 'model.chunk', id: 'm1', data: { x: 1 } }]);
  });

  it('unpacks a check dir sent after the workspace as the runner itself: steps (uid 1000) own the workspace, not the check files', async () => {
    const source = tempDir();
    mkdirSync(path.join(source, 'repo'));
    writeFileSync(path.join(source, 'repo', 'a.txt'), 'a');
    const hidden = tempDir();
    mkdirSync(path.join(hidden, 'tests'));
    writeFileSync(path.join(hidden, 'tests', 'hidden.sh'), 'exit 0\n', { mode: 0o666 });
    const [workspaceDir, checkDir] = [stepDir(), tempDir()];
    const stdin = new PassThrough();
    const input = new HostInput(stdin, workspaceDir, checkDir);
    const checkTar = packTree(hidden, ['tests'], { uid: 0, gid: 0, uname: 'root', gname: 'root' });
    await feedSandbox(stdin, { ...task, check: { checkout: [], files: true } }, packForSandbox(source, ['repo']), checkTar);
    await input.workspace;
    await input.checkFiles;
    const root = process.getuid?.() === 0;
    expect(statSync(path.join(workspaceDir, 'repo', 'a.txt')).uid).toBe(root ? STEP_UID : process.getuid?.());
    const checked = statSync(path.join(checkDir, 'tests', 'hidden.sh'));
    expect(readFileSync(path.join(checkDir, 'tests', 'hidden.sh'), 'utf8')).toBe('exit 0\n');
    expect(checked.uid).toBe(process.getuid?.());
    // --no-same-permissions: the tar's 0666 comes out under the runner's umask, not writable by anyone else.
    expect(checked.mode & 0o022).toBe(0);
  });

  it("lets steps run only on the host's start, and never when the host goes away without one", async () => {
    const stdin = new PassThrough();
    const input = new HostInput(stdin, stepDir(), tempDir());
    let started = false;
    void input.started.then(
      () => (started = true),
      () => {},
    );
    await feedSandbox(stdin, task, packForSandbox(tempDir(), []));
    await input.workspace;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(started).toBe(false);
    stdin.write(encodeHostMessage({ type: 'start' }));
    await expect(input.started).resolves.toBeUndefined();

    const gone = new PassThrough();
    const orphan = new HostInput(gone, stepDir(), tempDir());
    gone.end(encodeHostMessage({ type: 'task', task }));
    await expect(orphan.started).rejects.toThrow(/closed stdin before it said start/);
  });

  it('is done when tar stopped at the end marker before workspace.end arrived, and not before that', async () => {
    const source = tempDir();
    mkdirSync(path.join(source, 'repo'));
    writeFileSync(path.join(source, 'repo', 'a.txt'), 'a');
    const tar: Buffer[] = [];
    for await (const chunk of packForSandbox(source, ['repo']) as AsyncIterable<Buffer>) tar.push(chunk);
    // Zero padding after the end marker, as a real archive may carry: tar exits before reading all of it.
    const whole = Buffer.concat([...tar, Buffer.alloc(64 * 1024)]);
    const stdin = new PassThrough();
    const input = new HostInput(stdin, stepDir(), tempDir());
    let settled = false;
    void input.workspace.then(
      () => (settled = true),
      () => (settled = true),
    );
    stdin.write(encodeHostMessage({ type: 'task', task }));
    stdin.write(encodeHostMessage({ type: 'workspace.data', bytes: whole.length }));
    stdin.write(whole);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(settled).toBe(false);
    stdin.write(encodeHostMessage({ type: 'workspace.end' }));
    await expect(input.workspace).resolves.toBeUndefined();
  });

  it('fails the task and the workspace when the host goes away before they are complete', async () => {
    const stdin = new PassThrough();
    const input = new HostInput(stdin, stepDir(), tempDir());
    stdin.end(encodeHostMessage({ type: 'workspace.data', bytes: 100 }) + 'only a few bytes');
    await expect(input.task).rejects.toThrow(/closed stdin before the task/);
    await expect(input.workspace).rejects.toThrow(/closed stdin before the task and its workspace/);
  });

  it("fails the workspace with tar's own words when the tar is damaged", async () => {
    const stdin = new PassThrough();
    const input = new HostInput(stdin, stepDir(), tempDir());
    const junk = Buffer.alloc(1024, 0x41);
    stdin.write(encodeHostMessage({ type: 'task', task }));
    stdin.write(encodeHostMessage({ type: 'workspace.data', bytes: junk.length }));
    stdin.write(junk);
    stdin.write(encodeHostMessage({ type: 'workspace.end' }));
    await input.task;
    await expect(input.workspace).rejects.toThrow(/tar could not unpack the workspace \(exit 2\)/);
  });
});

describe('the host side: feeding the sandbox', () => {
  it('waits on backpressure and stops quietly when the container closes stdin', async () => {
    const source = tempDir();
    mkdirSync(path.join(source, 'repo'));
    for (let index = 0; index < 50; index += 1) writeFileSync(path.join(source, 'repo', `f${index}`), Buffer.alloc(64 * 1024, index));
    let received = 0;
    const stdin: Writable = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        // The container stops after the first 200 KiB: stdin goes away mid-workspace.
        if (received > 200 * 1024) stdin.destroy();
        setImmediate(done);
      },
    });
    await expect(feedSandbox(stdin, task, packForSandbox(source, ['repo']))).resolves.toBeUndefined();
    expect(received).toBeGreaterThan(200 * 1024);
    expect(received).toBeLessThan(50 * 64 * 1024);
  });

  it('rejects when the workspace cannot be read', async () => {
    const stdin = new PassThrough();
    stdin.resume();
    await expect(feedSandbox(stdin, task, packForSandbox(tempDir(), ['repo']))).rejects.toThrow(/ENOENT/);
  });
});

describe('artifacts streamed back', () => {
  const tar = Buffer.from('pretend this is a tar'.repeat(100));
  const sha256 = createHash('sha256').update(tar).digest('hex');
  const chunks = [tar.subarray(0, 700), tar.subarray(700)].map((piece) => piece.toString('base64'));

  it('gives the tar back when it arrived whole and matches its end', () => {
    const stream = new ArtifactStream();
    for (const data of chunks) stream.chunk(data);
    stream.end({ type: 'artifacts.end', bytes: tar.length, sha256 });
    expect(stream.result()).toEqual({ tar });
  });

  it.each([
    ['nothing streamed', (stream: ArtifactStream) => void stream, 'not streamed'],
    ['no end', (stream: ArtifactStream) => stream.chunk(chunks[0] as string), 'cut short'],
    ['a wrong length', (stream: ArtifactStream) => (stream.chunk(chunks[0] as string), stream.end({ type: 'artifacts.end', bytes: tar.length, sha256 })), 'announced'],
    ['a wrong digest', (stream: ArtifactStream) => (chunks.forEach((data) => stream.chunk(data)), stream.end({ type: 'artifacts.end', bytes: tar.length, sha256: 'b'.repeat(64) })), 'digest'],
    [
      'a chunk after the end',
      (stream: ArtifactStream) => (chunks.forEach((data) => stream.chunk(data)), stream.end({ type: 'artifacts.end', bytes: tar.length, sha256 }), stream.chunk('AAAA')),
      'after the end',
    ],
    [
      'a second end',
      (stream: ArtifactStream) => (
        chunks.forEach((data) => stream.chunk(data)),
        stream.end({ type: 'artifacts.end', bytes: tar.length, sha256 }),
        stream.end({ type: 'artifacts.end', bytes: tar.length, sha256 })
      ),
      'second end',
    ],
  ])('refuses %s, so the host copies .asp/ out instead', (_what, feed, reason) => {
    const stream = new ArtifactStream();
    feed(stream);
    const result = stream.result();
    expect('missing' in result && result.missing).toContain(reason);
  });

  it('stops holding bytes past the size limit', () => {
    const stream = new ArtifactStream();
    const piece = Buffer.alloc(4 * 1024 * 1024).toString('base64');
    for (let index = 0; index < ARTIFACTS_STREAM_MAX_BYTES / (4 * 1024 * 1024) + 1; index += 1) stream.chunk(piece);
    const result = stream.result();
    expect('missing' in result && result.missing).toContain(`more than ${ARTIFACTS_STREAM_MAX_BYTES} bytes`);
  });

  it('the host parser takes well-formed chunks and ends and refuses malformed ones', () => {
    expect(parseProtocolLine(`{"asp":1,"type":"artifacts.chunk","data":"${chunks[0]}"}`).kind).toBe('message');
    expect(parseProtocolLine(`{"asp":1,"type":"artifacts.end","bytes":${tar.length},"sha256":"${sha256}"}`).kind).toBe('message');
    expect(parseProtocolLine('{"asp":1,"type":"artifacts.chunk","data":"not base64!"}').kind).toBe('invalid');
    expect(parseProtocolLine(`{"asp":1,"type":"artifacts.end","bytes":${ARTIFACTS_STREAM_MAX_BYTES + 1},"sha256":"${sha256}"}`).kind).toBe('invalid');
  });
});
