import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import { demultiplex, engineTarget } from '../../src/docker/engine-client.js';
import { EngineAdapter, MAX_API_VERSION } from '../../src/docker/engine-adapter.js';
import { DOCKER_20_VERSION, routeOf } from '../helpers/engine-api.js';
import { freePort } from '../helpers/ports.js';

/** One request as the fake daemon saw it. */
interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

type Route = (request: IncomingMessage, response: ServerResponse, body: string) => void;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A stand-in for the Docker daemon on a unix socket: routes by "METHOD /path", records every request. */
async function fakeDaemon(
  routes: Record<string, Route>,
  onUpgrade?: (request: IncomingMessage, socket: Socket) => void,
): Promise<{ adapter: EngineAdapter; seen: Seen[]; versions: string[]; socketPath: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-engine-'));
  const socketPath = path.join(dir, 'docker.sock');
  const seen: Seen[] = [];
  const versions: string[] = [];
  const server: Server = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on('data', (chunk: Buffer) => parts.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8');
      // Recorded without the version prefix, and without the one /version call: what each test is about.
      const url = (request.url ?? '').replace(/^\/v\d+\.\d+\//, '/');
      versions.push(request.url ?? '');
      if (request.url !== '/version') seen.push({ method: request.method ?? '', url, contentType: request.headers['content-type'], body });
      // Every path but the first /version carries the API version asp settled on: routed without it.
      const route = routes[routeOf(request)] ?? (request.url === '/version' ? json(200, VERSION) : undefined);
      if (route) route(request, response, body);
      else {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ message: `page not found: ${request.url}` }));
      }
    });
  });
  if (onUpgrade) server.on('upgrade', (request: IncomingMessage, socket: Socket) => onUpgrade(request, socket));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { adapter: new EngineAdapter(`unix://${socketPath}`), seen, versions, socketPath };
}

const VERSION = DOCKER_20_VERSION;

const json =
  (status: number, body: unknown): Route =>
  (_request, response) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) out += chunk.toString('utf8');
  return out;
}

describe('the Engine API client', () => {
  it('reads DOCKER_HOST: the local socket, unix://, tcp:// and https://', () => {
    expect(engineTarget(undefined)).toEqual({ socketPath: '/var/run/docker.sock', protocol: 'http' });
    expect(engineTarget('unix:///run/user/1000/docker.sock')).toEqual({ socketPath: '/run/user/1000/docker.sock', protocol: 'http' });
    expect(engineTarget('tcp://10.0.0.5')).toEqual({ host: '10.0.0.5', port: 2375, protocol: 'http' });
    expect(engineTarget('https://docker.example:3000')).toEqual({
      host: 'docker.example',
      port: 3000,
      protocol: 'https',
      tls: { ca: undefined, cert: undefined, key: undefined, rejectUnauthorized: true },
    });
    // TLS from discovery turns a tcp:// host into https, on 2376 unless the port is given.
    expect(engineTarget('tcp://d', { tls: { verify: false, ca: undefined, cert: 'C', key: 'K', from: '/c' } })).toEqual({
      host: 'd',
      port: 2376,
      protocol: 'https',
      tls: { ca: undefined, cert: 'C', key: 'K', rejectUnauthorized: false },
    });
    for (const bad of ['npipe:////./pipe/docker_engine', 'not a url', 'tcp://']) {
      expect(() => engineTarget(bad)).toThrow(expect.objectContaining({ code: 'BAD_INPUT', message: `DOCKER_HOST=${bad} is not a daemon address asp can use` }));
    }
  });

  it("ssh://: the docker CLI's command line, ASP_SSH_COMMAND in place of ssh, and no host or user that ssh would read as an option", () => {
    expect(engineTarget('ssh://me@build.example:2222')).toEqual({
      protocol: 'http',
      ssh: { command: 'ssh', args: ['-o', 'ConnectTimeout=30', '-o', 'BatchMode=yes', '-l', 'me', '-p', '2222', '--', 'build.example', 'docker', 'system', 'dial-stdio'] },
    });
    expect(engineTarget('ssh://host', { sshCommand: 'ssh -i /k/id -F /dev/null' }).ssh).toEqual({
      command: 'ssh',
      args: ['-i', '/k/id', '-F', '/dev/null', '-o', 'ConnectTimeout=30', '-o', 'BatchMode=yes', '--', 'host', 'docker', 'system', 'dial-stdio'],
    });
    for (const bad of ['ssh://-oProxyCommand=x', 'ssh://me:secret@host', 'ssh://host/path', 'ssh://']) {
      expect(() => engineTarget(bad)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    }
  });

  it("asks /version once, unversioned, then speaks the API it settled on: its own below asp's ceiling, the ceiling above it", async () => {
    const { adapter, versions } = await fakeDaemon({ 'GET /volumes': json(200, { Volumes: [] }) });
    await adapter.listVolumes([]);
    await adapter.listVolumes([]);
    expect(versions.map((url) => url.split('?')[0])).toEqual(['/version', '/v1.41/volumes', '/v1.41/volumes']);
    const newer = await fakeDaemon({ 'GET /version': json(200, { ...VERSION, ApiVersion: '1.52', MinAPIVersion: '1.44' }), 'GET /volumes': json(200, { Volumes: [] }) });
    await newer.adapter.listVolumes([]);
    expect(newer.versions[1]?.split('?')[0]).toBe(`/v${MAX_API_VERSION}/volumes`);
  });

  it("refuses a daemon older than the API asp needs, and one that no longer speaks asp's, in one line each (exit 3)", async () => {
    const old = await fakeDaemon({ 'GET /version': json(200, { ...VERSION, ApiVersion: '1.39' }) });
    await expect(old.adapter.listVolumes([])).rejects.toMatchObject({ code: 'DOCKER_FAILED', message: expect.stringMatching(/speaks Engine API 1\.39; asp needs 1\.40 or newer/) });
    const tooNew = await fakeDaemon({ 'GET /version': json(200, { ...VERSION, ApiVersion: '1.60', MinAPIVersion: '1.50' }) });
    await expect(tooNew.adapter.listVolumes([])).rejects.toMatchObject({ code: 'DOCKER_FAILED', message: expect.stringMatching(/accepts Engine API 1\.50 and newer only/) });
    expect(exitCodeFor('DOCKER_FAILED')).toBe(3);
  });

  it('sends JSON bodies and label filters the way the daemon reads them, and reads its answers', async () => {
    const { adapter, seen } = await fakeDaemon({
      'POST /containers/create': json(201, { Id: 'c123', Warnings: [] }),
      'GET /containers/json': json(200, [{ Id: 'c123', Names: ['/asp-t1'], State: 'running', Labels: { 'asp.managed': 'true' }, Created: 1_700_000_000 }]),
      'GET /volumes': json(200, { Volumes: [{ Name: 'asp-ws-t1', Labels: null, CreatedAt: '2026-11-28T03:00:00Z' }] }),
      'POST /containers/c123/wait': json(200, { StatusCode: 7 }),
      'POST /containers/c123/start': (_request, response) => {
        response.writeHead(204);
        response.end();
      },
    });
    const body = { name: 'asp-t1', Image: 'img', Cmd: ['asp-sandbox'] } as unknown as Parameters<EngineAdapter['createContainer']>[0];
    expect(await adapter.createContainer(body)).toBe('c123');
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/containers/create?name=asp-t1', contentType: 'application/json' });
    expect(JSON.parse(seen[0]?.body ?? '')).toEqual({ Image: 'img', Cmd: ['asp-sandbox'] });

    expect(await adapter.listContainers(['asp.managed=true'])).toEqual([{ id: 'c123', name: 'asp-t1', state: 'running', labels: { 'asp.managed': 'true' }, createdAt: new Date(1_700_000_000_000) }]);
    expect(new URL(`http://x${seen[1]?.url}`).searchParams.get('filters')).toBe('{"label":["asp.managed=true"]}');
    expect(await adapter.listVolumes(['asp.managed'])).toEqual([{ name: 'asp-ws-t1', labels: {}, createdAt: new Date('2026-11-28T03:00:00Z') }]);
    await adapter.start('c123');
    expect(await adapter.wait('c123')).toBe(7);
  });

  it('turns the daemon\'s errors into one-line AspErrors, and takes "already gone" as done', async () => {
    const { adapter } = await fakeDaemon({
      'DELETE /containers/gone': json(404, { message: 'No such container: gone' }),
      'POST /containers/running/start': (_request, response) => {
        response.writeHead(304);
        response.end();
      },
      'POST /containers/stopped/kill': json(409, { message: 'Container stopped is not running' }),
      'DELETE /volumes/busy': json(409, { message: 'remove busy: volume is in use' }),
      'POST /containers/create': json(404, { message: 'No such image: nope:1' }),
      'POST /containers/c1/start': json(500, { message: 'unknown or invalid runtime name: runsc' }),
      'GET /images/present/json': json(200, { Id: 'sha256:1' }),
      'GET /containers/c1/archive': json(404, { message: 'Could not find the file /workspace/.asp in container c1' }),
    });
    await expect(adapter.removeContainer('gone')).resolves.toBeUndefined();
    await expect(adapter.start('running')).resolves.toBeUndefined();
    await expect(adapter.kill('stopped')).resolves.toBeUndefined();
    await expect(adapter.removeVolume('busy')).rejects.toMatchObject({ code: 'DOCKER_CONFLICT', message: 'cannot remove volume busy: remove busy: volume is in use' });
    await expect(adapter.createContainer({ name: 'x' } as Parameters<EngineAdapter['createContainer']>[0])).rejects.toMatchObject({
      code: 'IMAGE_UNAVAILABLE',
      message: 'cannot create container x: No such image: nope:1',
    });
    await expect(adapter.start('c1')).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' });
    expect(await adapter.imageExists('present')).toBe(true);
    expect(await adapter.imageExists('absent')).toBe(false);
    await expect(adapter.getArchive('c1', '/workspace/.asp')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: '/workspace/.asp is not in the container: Could not find the file /workspace/.asp in container c1',
    });
  });

  it('asks a forced removal again when it met the container on its way out (nothing was removed), and not for ever', async () => {
    let asked = 0;
    const { adapter } = await fakeDaemon({
      'DELETE /containers/exiting': (...args) => {
        asked += 1;
        if (asked === 1) return json(409, { message: 'Could not kill running container exiting, cannot remove - Container exiting is not running' })(...args);
        const [, response] = args;
        response.writeHead(204);
        response.end();
      },
      'DELETE /containers/stuck': json(409, { message: 'Could not kill running container stuck, cannot remove - Container stuck is not running' }),
      'DELETE /containers/busy': json(409, { message: 'removal of container busy is already in progress' }),
    });
    await expect(adapter.removeContainer('exiting')).resolves.toBeUndefined();
    expect(asked).toBe(2);
    await expect(adapter.removeContainer('stuck')).rejects.toMatchObject({ message: expect.stringContaining('cannot remove - Container stuck is not running') });
    await expect(adapter.removeContainer('busy')).resolves.toBeUndefined();
  });

  it('says the daemon does not answer when there is no socket, or nothing listens, naming which and how it was found', async () => {
    const missing = await new EngineAdapter('unix:///nonexistent/docker.sock').info().catch((caught: unknown) => caught);
    expect(missing).toBeInstanceOf(AspError);
    expect(missing).toMatchObject({
      code: 'DOCKER_UNAVAILABLE',
      message: 'cannot reach the Docker daemon: Docker at unix:///nonexistent/docker.sock does not answer (ENOENT: no socket there; DOCKER_HOST)',
    });
    const port = await freePort();
    const refused = await new EngineAdapter(`tcp://127.0.0.1:${port}`).info().catch((caught: unknown) => caught);
    expect(refused).toMatchObject({
      code: 'DOCKER_UNAVAILABLE',
      message: `cannot reach the Docker daemon: Docker at tcp://127.0.0.1:${port} does not answer (ECONNREFUSED: nothing listens there, the daemon is not running; DOCKER_HOST)`,
    });
    expect((refused as AspError).hint).toMatch(/start the Docker daemon/);
  });

  it('a daemon that accepts the connection and never answers: the call fails at its timeout, in one line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-engine-hang-'));
    const socketPath = path.join(dir, 'docker.sock');
    const held: Socket[] = [];
    const server = createNetServer((socket) => held.push(socket)); // reads nothing, writes nothing
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => {
      for (const socket of held) socket.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const started = Date.now();
    const error = await new EngineAdapter(`unix://${socketPath}`, { timeoutMs: 300 }).info().catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error).toMatchObject({ code: 'DOCKER_UNAVAILABLE', message: `cannot reach the Docker daemon: Docker at unix://${socketPath} accepted the connection and sent nothing for 0.3 s` });
    expect((error as AspError).hint).toMatch(/ASP_DOCKER_TIMEOUT/);
    expect(exitCodeFor('DOCKER_UNAVAILABLE')).toBe(3);
  });

  it('waits for a container as long as it runs: wait has no timeout', async () => {
    const { socketPath } = await fakeDaemon({
      'POST /containers/slow/wait': (_request, response) => {
        setTimeout(() => json(200, { StatusCode: 0 })(_request, response, ''), 600);
      },
    });
    const fast = new EngineAdapter(`unix://${socketPath}`, { timeoutMs: 200 });
    expect(await fast.wait('slow')).toBe(0);
  });

  it('a kept-alive socket the daemon dropped is retried once for a GET, and reported (not retried) for a POST', async () => {
    let requests = 0;
    const server = createServer((request, response) => {
      requests += 1;
      const count = ((request.socket as Socket & { served?: number }).served = ((request.socket as Socket & { served?: number }).served ?? 0) + 1);
      // The second request on a connection finds it gone, as after a daemon dropped its idle kept-alive sockets.
      if (count > 1) {
        request.socket.destroy();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive' });
      response.end(request.url === '/version' ? JSON.stringify(VERSION) : request.method === 'POST' ? JSON.stringify({ Id: 'c1' }) : JSON.stringify({ Volumes: [] }));
    });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-engine-ka-'));
    const socketPath = path.join(dir, 'docker.sock');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const adapter = new EngineAdapter(`unix://${socketPath}`);
    await adapter.listVolumes([]); // /version, then /volumes on the same kept-alive socket: dropped, retried on a new one
    expect(await adapter.listVolumes([])).toEqual([]);
    expect(requests).toBeGreaterThanOrEqual(4);
    const created = await adapter.createContainer({ name: 'x' } as unknown as Parameters<EngineAdapter['createContainer']>[0]).catch((caught: unknown) => caught);
    expect(created).toMatchObject({ code: 'DOCKER_UNAVAILABLE', message: expect.stringMatching(/^cannot create container x: Docker at unix:\/\/.* closed the connection \((ECONNRESET|EPIPE)\)$/) });
  });

  it("keeps a daemon's error to one bounded line, even when it quotes a whole request field back", async () => {
    const { adapter } = await fakeDaemon({ 'POST /containers/create': json(500, { message: `opening seccomp profile failed: open {${'"x",'.repeat(3000)}}: file name too long\nsecond line` }) });
    const error = await adapter.createContainer({ name: 'x' } as unknown as Parameters<EngineAdapter['createContainer']>[0]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AspError);
    const message = (error as AspError).message;
    expect(message.length).toBeLessThan(600);
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^cannot create container x: opening seccomp profile failed: open .* … \(\d+ characters left out\) … .*file name too long second line$/);
  });

  it("speaks Podman's dialect: the seccomp profile as a file of its own, /run and /var/tmp read-only, its inspect read back in asp's terms", async () => {
    const podmanVersion = { ...VERSION, Version: '4.3.1', Components: [{ Name: 'Podman Engine' }] };
    const { adapter, seen } = await fakeDaemon({
      'GET /version': json(200, podmanVersion),
      'POST /containers/create': json(201, { Id: 'p1' }),
      'GET /containers/p1/json': (request, response) => {
        const created = JSON.parse(seen.find((entry) => entry.url.startsWith('/containers/create'))?.body ?? '{}') as { HostConfig: { SecurityOpt: string[] } };
        json(200, {
          Config: { User: '0:0' },
          HostConfig: {
            SecurityOpt: created.HostConfig.SecurityOpt,
            Binds: ['asp-ws-t1:/workspace:rw,rprivate,nosuid,nodev,rbind'],
            CapDrop: ['CHOWN', 'MKNOD'],
            CapAdd: ['DAC_READ_SEARCH'],
            Mounts: null,
          },
        })(request, response, '');
      },
    });
    const profile = JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO' });
    const body = { name: 'p', Image: 'img', HostConfig: { SecurityOpt: ['no-new-privileges', `seccomp=${profile}`], Tmpfs: { '/tmp': 'rw,size=1m' } } };
    expect(await adapter.createContainer(body as unknown as Parameters<EngineAdapter['createContainer']>[0])).toBe('p1');
    const sent = JSON.parse(seen.find((entry) => entry.url.startsWith('/containers/create'))?.body ?? '{}') as { HostConfig: { SecurityOpt: string[]; Tmpfs: Record<string, string> } };
    const file = sent.HostConfig.SecurityOpt[1]?.replace(/^seccomp=/, '') ?? '';
    expect(file).toMatch(/^\/.*asp-seccomp-.*\.json$/);
    expect(readFileSync(file, 'utf8')).toBe(profile);
    expect(sent.HostConfig.Tmpfs).toEqual({ '/run': 'ro,nosuid,nodev,noexec,size=64k', '/var/tmp': 'ro,nosuid,nodev,noexec,size=64k', '/tmp': 'rw,size=1m' });
    const inspected = await adapter.inspectContainer('p1');
    // The profile as asp asked for it; the named volume as the mount it is; no host path; CapDrop left to the runner's hello.
    expect(inspected.securityOpt).toEqual(['no-new-privileges', `seccomp=${profile}`]);
    expect(inspected.mounts).toEqual([{ type: 'volume', target: '/workspace' }]);
    expect(inspected.binds).toEqual([]);
    expect(inspected.capDrop).toBeUndefined();
  });

  it('refuses a Podman that is not on this host: it could not read the profile file', async () => {
    const port = await freePort();
    const server = createServer((request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ ...VERSION, Components: [{ Name: 'Podman Engine' }] }));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    cleanups.push(() => server.close());
    const error = await new EngineAdapter(`tcp://127.0.0.1:${port}`)
      .createContainer({ name: 'x', HostConfig: { SecurityOpt: ['seccomp={}'], Tmpfs: {} } } as unknown as Parameters<EngineAdapter['createContainer']>[0])
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'DOCKER_FAILED', message: expect.stringMatching(/^Podman at tcp:\/\/127\.0\.0\.1:\d+ is not on this host/) });
  });

  it('streams a build context in and reports progress, and a failed build in one line', async () => {
    let received = 0;
    const { adapter, seen } = await fakeDaemon({
      'POST /build': (request, response, body) => {
        received = body.length;
        response.writeHead(200, { 'content-type': 'application/json' });
        const failing = new URL(`http://x${request.url}`).searchParams.get('t') === 'bad:1';
        response.write('{"stream":"Step 1/2 : FROM base\\n"}\r\n{"stream":" ---> 1234\\n"}\r\n');
        response.end(failing ? '{"errorDetail":{"message":"pull access denied for base"},"error":"pull access denied for base"}\r\n' : '{"stream":"Successfully tagged good:1\\n"}\r\n');
      },
    });
    const progress: string[] = [];
    await adapter.buildImage(Readable.from([Buffer.alloc(3000, 1)]), { tag: 'good:1', buildArgs: { BASE_IMAGE: 'base' }, labels: { 'asp.image': 'sandbox' } }, (line) => progress.push(line));
    expect(progress).toEqual(['Step 1/2 : FROM base', '---> 1234', 'Successfully tagged good:1']);
    expect(received).toBe(3000);
    expect(seen[0]?.contentType).toBe('application/x-tar');
    const query = new URL(`http://x${seen[0]?.url}`).searchParams;
    expect([query.get('t'), query.get('buildargs'), query.get('labels')]).toEqual(['good:1', '{"BASE_IMAGE":"base"}', '{"asp.image":"sandbox"}']);
    await expect(adapter.buildImage(Readable.from([Buffer.alloc(10)]), { tag: 'bad:1', buildArgs: {}, labels: {} }, () => {})).rejects.toMatchObject({
      code: 'IMAGE_UNAVAILABLE',
      message: 'building bad:1 failed: pull access denied for base',
    });
  });

  it('attaches over a hijacked connection: stdin goes in, stdout and stderr come out apart, and end with it', async () => {
    const { adapter } = await fakeDaemon({}, (request, socket) => {
      expect(request.url).toBe('/v1.41/containers/c9/attach?stream=1&stdin=1&stdout=1&stderr=1&logs=0');
      expect([request.headers.connection, request.headers.upgrade]).toEqual(['Upgrade', 'tcp']);
      // A frame rides along with the 101, in the same write: the client must not lose it.
      socket.write(Buffer.concat([Buffer.from('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n'), frame(1, 'hello ')]));
      socket.on('data', (chunk: Buffer) => {
        socket.write(frame(1, `got ${chunk.toString('utf8')}`));
        socket.write(frame(2, 'a warning'));
        socket.end();
      });
    });
    const streams = await adapter.attach('c9');
    streams.stdin.write('ping');
    const [stdout, stderr] = await Promise.all([text(streams.stdout), text(streams.stderr)]);
    expect(stdout).toBe('hello got ping');
    expect(stderr).toBe('a warning');
  });

  it('refuses an attach the daemon answers with an error', async () => {
    const { adapter } = await fakeDaemon({ 'POST /containers/missing/attach': json(404, { message: 'No such container: missing' }) });
    await expect(adapter.attach('missing')).rejects.toMatchObject({ code: 'DOCKER_FAILED', message: 'cannot attach to the container: No such container: missing' });
  });
});

describe('demultiplexing container output', () => {
  it('splits frames that arrive cut at any byte', async () => {
    const whole = Buffer.concat([frame(1, 'out-1 '), frame(2, 'err-1'), frame(1, ''), frame(1, 'out-2 é')]);
    const source = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    demultiplex(source, stdout, stderr);
    for (const byte of whole) source.write(Buffer.from([byte]));
    source.end();
    await new Promise((resolve) => setImmediate(resolve));
    stdout.end();
    stderr.end();
    expect(await text(stdout)).toBe('out-1 out-2 é');
    expect(await text(stderr)).toBe('err-1');
  });
});
