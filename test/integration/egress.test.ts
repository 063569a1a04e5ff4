import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSettings } from '../../src/config/settings.js';
import type { Lookup } from '../../src/egress/egress-relay.js';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import type { Observation } from '../../src/tracing/trace-model.js';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { makeTestCa, startBlobServer, startGitServer, startPypiIndex, type TestCa, type TestServer } from '../helpers/egress-servers.js';
import { ensureTestImage } from '../helpers/test-images.js';
import { startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.js';
import { repoWith } from '../helpers/repos.js';
import { EGRESS_CLIENT } from '../fixtures/egress-client.js';
import { run, trace } from '../helpers/run.js';

/** Opens a CONNECT tunnel and holds it: says when it is answered and when the far end hangs up. */
const HOLD = String.raw`
const http = require('http');
const proxy = new URL(process.env.HTTP_PROXY);
const [target, ms] = process.argv.slice(2);
const started = Date.now();
const connect = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target });
connect.on('connect', (answer, socket) => {
  console.log('hold ' + target + ': ' + answer.statusCode + ' ' + (answer.headers['x-asp-egress-refused'] || ''));
  if (answer.statusCode !== 200) return;
  const timer = setTimeout(() => { console.log('hold ' + target + ': still open after ' + ms + ' ms'); socket.destroy(); }, Number(ms));
  socket.on('close', () => { clearTimeout(timer); console.log('hold ' + target + ': closed after ' + Math.round((Date.now() - started) / 100) / 10 + ' s'); });
  socket.on('error', () => {});
});
connect.end();
`;

/** Model calls while a slow download runs: each says whether the download was still going when it was answered. */
const FLOW = String.raw`
const { spawn } = require('child_process');
const [blob] = process.argv.slice(2);
const download = spawn(process.execPath, ['net.js', blob, '--slow'], { stdio: ['ignore', 'pipe', 'inherit'] });
let done = false, out = '';
download.stdout.on('data', (chunk) => (out += chunk));
download.on('close', () => { done = true; process.stdout.write(out); });
(async () => {
  await new Promise((resolve) => setTimeout(resolve, 700));
  for (let index = 0; index < 5; index += 1) {
    const started = Date.now();
    const response = await fetch(process.env.OPENAI_BASE_URL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'call ' + index }] }) });
    const body = await response.json();
    console.log('model ' + index + ': ' + response.status + ' ' + body.choices[0].message.content + ' in ' + (Date.now() - started) + ' ms, download ' + (done ? 'over' : 'still running'));
  }
})();
`;

const BLOB_BYTES = 64 * 1024 * 1024;
const NAMES = ['git.pkg.test', 'pypi.pkg.test', 'a.pkg.test', 'other.pkg.test'];

/** A server that streams BLOB_BYTES on /blob and says on /sent how many it has handed to the kernel so far. */
async function startCountingServer(): Promise<TestServer & { sha256: string }> {
  const block = Buffer.alloc(1024 * 1024, 7);
  const hash = createHash('sha256');
  for (let index = 0; index < BLOB_BYTES / block.length; index += 1) hash.update(block);
  let sent = 0;
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    if (request.url?.endsWith('/sent')) return void response.end(`sent ${sent}\n`);
    response.writeHead(200, { 'content-length': BLOB_BYTES, 'content-type': 'application/octet-stream' });
    sent = 0;
    let left = BLOB_BYTES / block.length;
    const more = () => {
      while (left > 0) {
        left -= 1;
        const ok = response.write(block, () => (sent += block.length));
        if (!ok) return void response.once('drain', more);
      }
      response.end();
    };
    more();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    sha256: hash.digest('hex'),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const egressSpans = (result: TaskResult): Observation[] => trace(result).observations.filter((observation) => observation.metadata.kind === 'egress');
const egressEvents = (result: TaskResult): Array<Record<string, unknown>> =>
  readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((event) => event.type === 'egress');

describe.skipIf(!dockerAvailable)('egress through the host (--allow-host)', () => {
  let scratch: string;
  let ca: TestCa;
  let gitHttp: TestServer;
  let gitHttps: TestServer;
  let pypi: TestServer;
  let python: string;
  let other: TestServer;
  let counting: TestServer & { sha256: string };
  let fake: FakeOpenAi;
  /** The host's resolver for these tests: the test names are 127.0.0.1, two more are refused addresses. */
  const lookup: Lookup = (name) => {
    if (NAMES.includes(name) || name.endsWith('.pkg.test') || name === 'pkg.test') return Promise.resolve(['127.0.0.1']);
    if (name === 'internal.test') return Promise.resolve(['10.0.0.7']);
    if (name === 'metadata.test') return Promise.resolve(['169.254.169.254']);
    return Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }));
  };

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-egress-'));
    const git = (...args: string[]) =>
      execFileSync('git', args, {
        env: { PATH: process.env.PATH, HOME: scratch, GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
      });
    const work = path.join(scratch, 'work');
    git('init', '-q', '-b', 'main', work);
    execFileSync('sh', ['-c', `echo 'served by git http-backend' > ${work}/README`]);
    git('-C', work, 'add', '.');
    git('-C', work, 'commit', '-qm', 'first');
    git('clone', '-q', '--bare', work, path.join(scratch, 'git', 'lib.git'));
    ca = await makeTestCa(path.join(scratch, 'ca'), NAMES);
    gitHttp = await startGitServer({ repoDir: path.join(scratch, 'git') });
    gitHttps = await startGitServer({ repoDir: path.join(scratch, 'git'), tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    pypi = await startPypiIndex({ name: 'asp-egress-demo', version: '1.0.0', module: "GREETING = 'hello from the local index'\n", tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    python = await ensureTestImage('python');
    other = await startBlobServer({ bytes: 1024 });
    counting = await startCountingServer();
    fake = await startFakeOpenAi((request) => ({ content: `answer to ${(request.body.messages as Array<{ content: string }>)[0]?.content ?? ''}` }));
  });

  afterAll(async () => {
    for (const server of [gitHttp, gitHttps, pypi, other, counting, fake]) await server?.close();
    rmSync(scratch, { recursive: true, force: true });
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  const repo = () => repoWith({ 'net.js': EGRESS_CLIENT, 'hold.js': HOLD, 'flow.js': FLOW, 'ca.pem': readFileSync(ca.caFile) });

  it('lets git (HTTP and HTTPS) reach allowed hosts through the proxy, and refuses one not on the list with 403, in the output and the trace', async () => {
    const { result, output } = await run(
      testSettings(),
      {
        repo: repo(),
        steps: [
          { name: 'clone', run: `git clone -q http://git.pkg.test:${gitHttp.port}/lib.git http-clone && cat http-clone/README` },
          { name: 'clone-tls', run: `GIT_SSL_CAINFO=$PWD/ca.pem git clone -q https://git.pkg.test:${gitHttps.port}/lib.git tls-clone && cat tls-clone/README` },
          { name: 'refused', run: `node net.js http://other.pkg.test:${other.port}/hello; echo "exit $?"` },
        ],
        check: [{ name: 'remote', run: `git ls-remote http://git.pkg.test:${gitHttp.port}/lib.git` }],
        network: {
          allow: [`git.pkg.test:${gitHttp.port}`, `git.pkg.test:${gitHttps.port}`, `127.0.0.1:${gitHttp.port}`, `127.0.0.1:${gitHttps.port}`],
        },
      },
      { egressLookup: lookup },
    );
    expect(output).toContain('[clone] served by git http-backend');
    expect(output).toContain('[clone-tls] served by git http-backend');
    expect(output).toContain(`[refused] [asp: egress to other.pkg.test:${other.port} refused: other.pkg.test:${other.port} is not on the allowlist`);
    expect(output).toMatch(new RegExp(`\\[refused\\] GET http://other.pkg.test:${other.port}/hello: 403 .*not on the allowlist`));
    expect(result.status).toBe('passed');
    expect(result.check?.status).toBe('passed');
    expect(other.requests).toEqual([]);
    expect(gitHttp.requests.some((request) => request.startsWith('GET /lib.git/info/refs'))).toBe(true);
    expect(gitHttps.requests.some((request) => request.startsWith('POST /lib.git/git-upload-pack'))).toBe(true);

    const spans = egressSpans(result);
    const steps = new Map(trace(result).observations.map((observation) => [observation.id, observation.name]));
    const refused = spans.find((span) => span.metadata.outcome === 'refused');
    expect(refused).toMatchObject({ name: `egress other.pkg.test:${other.port}`, level: 'WARNING', metadata: { allowed: false, status: 403 } });
    expect(refused?.statusMessage).toContain('not on the allowlist');
    expect(steps.get(refused?.parentObservationId ?? '')).toBe('refused');
    const tls = spans.find((span) => span.name === `egress git.pkg.test:${gitHttps.port}`);
    expect(tls).toMatchObject({ level: 'DEFAULT', input: { via: 'connect' }, output: { outcome: 'closed', address: '127.0.0.1' } });
    expect(Number((tls?.output as { bytesIn: number }).bytesIn)).toBeGreaterThan(1000);
    expect(spans.some((span) => steps.get(span.parentObservationId ?? '') === 'check:remote')).toBe(true);
    const events = egressEvents(result);
    expect(events.length).toBe(spans.length);
    expect(events.find((event) => event.outcome === 'refused')).toMatchObject({ host: 'other.pkg.test', port: other.port, allowed: false, status: 403, step: 'refused' });
    expect(result.egress).toMatchObject({ refused: 1 });
    expect(result.egress?.connections).toBe(events.length);
  });

  it('lets pip install from a local HTTPS index (its CA in PIP_CERT) on an image of its own, and says in the trace what it fetched', async () => {
    const { result, output } = await run(
      testSettings(),
      {
        repo: repoWith({ 'ca.pem': readFileSync(ca.caFile) }),
        image: python,
        steps: [
          {
            name: 'pip',
            run: `PIP_CERT=$PWD/ca.pem python3 -m pip install -q --disable-pip-version-check --no-cache-dir --target /workspace/repo/site --index-url https://pypi.pkg.test:${pypi.port}/simple/ asp-egress-demo && PYTHONPATH=site python3 -c 'import asp_egress_demo as m; print(m.GREETING)'`,
          },
        ],
        network: { allow: [`pypi.pkg.test:${pypi.port}`, `127.0.0.1:${pypi.port}`] },
      },
      { egressLookup: lookup },
    );
    expect(output).toContain('[pip] hello from the local index');
    expect(result.status).toBe('passed');
    expect(pypi.requests).toEqual(expect.arrayContaining(['GET /simple/asp-egress-demo/', 'GET /files/asp_egress_demo-1.0.0-py3-none-any.whl']));
    const spans = egressSpans(result);
    expect(spans.length).toBeGreaterThanOrEqual(1);
    expect(spans.every((span) => span.name === `egress pypi.pkg.test:${pypi.port}` && span.metadata.outcome === 'closed')).toBe(true);
  }, 120_000);

  it('leaves the sandbox no way out but the proxy: no interface, no DNS, loopback is its own', async () => {
    const probe = String.raw`
      const net = require('net'), dns = require('dns');
      const attempt = (host, port) => new Promise((done) => { const s = net.connect(port, host); s.on('connect', () => { console.log('connected to ' + host); s.destroy(); done(); }); s.on('error', (e) => { console.log(host + ':' + port + ' ' + e.code); done(); }); });
      (async () => {
        await attempt('127.0.0.1', ${gitHttp.port});
        await attempt('1.1.1.1', 443);
        await new Promise((done) => dns.lookup('git.pkg.test', (e) => { console.log('dns ' + (e ? e.code : 'resolved')); done(); }));
        console.log('interfaces ' + require('fs').readdirSync('/sys/class/net').join(','));
      })();`;
    const { result, output } = await run(
      testSettings(),
      { repo: repoWith({ 'probe.js': probe }), steps: [{ name: 'probe', run: 'node probe.js; env | grep -i _proxy= | sort' }], network: { allow: [`git.pkg.test:${gitHttp.port}`] } },
      { egressLookup: lookup },
    );
    expect(result.status).toBe('passed');
    expect(output).toContain(`127.0.0.1:${gitHttp.port} ECONNREFUSED`);
    expect(output).toMatch(/1\.1\.1\.1:443 (ENETUNREACH|EHOSTUNREACH)/);
    expect(output).toMatch(/dns (ENOTFOUND|EAI_AGAIN)/);
    expect(output).toContain('interfaces lo');
    expect(output).not.toContain('connected to');
    for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy', 'npm_config_proxy', 'PIP_PROXY']) expect(output).toContain(`${name}=http://127.0.0.1:3128`);
    expect(gitHttp.requests.length).toBeGreaterThanOrEqual(0);
  });

  it('without --allow-host there is no proxy and no variable for one', async () => {
    const { result, output } = await run(testSettings(), { repo: repo(), steps: [{ name: 'look', run: 'env | grep -ci proxy; node net.js http://git.pkg.test/x 2>&1 | head -c 300; true' }] });
    expect(result.status).toBe('passed');
    expect(output).toContain('[look] 0');
    expect(result.egress).toBeUndefined();
    expect(egressEvents(result)).toEqual([]);
  });

  it('refuses IP literals not named, names resolving to loopback, private or metadata addresses, wildcards two labels deep, other ports', async () => {
    const port = other.port;
    const targets = [
      `http://127.0.0.1:${port}/hello`, // an IP literal not on the list
      `http://loopback.pkg.test:${port}/hello`, // allowed by name, resolves to 127.0.0.1, which is not allowed
      'http://internal.test:80/', // resolves to a private address
      'http://metadata.test:80/latest/meta-data/', // resolves to the metadata address
      `http://a.b.pkg.test:${port}/hello`, // the wildcard stands for one label, not two
      `http://pkg.test:${port}/hello`, // nor for none
      `http://a.pkg.test:${gitHttp.port}/hello`, // allowed name, another port
    ];
    // a.pkg.test resolves to two loopback addresses: refused while neither is allowed exactly.
    const twoLoopbacks: Lookup = (name) => (name === 'a.pkg.test' ? Promise.resolve(['127.0.0.2', '127.0.0.1']) : lookup(name));
    const { output } = await run(
      testSettings(),
      {
        repo: repo(),
        steps: [{ name: 'refused', run: [...targets, `http://a.pkg.test:${port}/hello`].map((target) => `node net.js ${target}`).join('; ') }],
        network: { allow: [`*.pkg.test:${port}`, 'loopback.pkg.test:' + port, 'internal.test:80', 'metadata.test:80', '10.0.0.8:80'] },
      },
      { egressLookup: twoLoopbacks },
    );
    expect(output).toContain(`a.pkg.test resolves to 127.0.0.2 (loopback)`);
    expect(output).toContain(`127.0.0.1:${port} is an IP address not on the allowlist (allow it exactly with --allow-host 127.0.0.1:${port})`);
    expect(output).toContain(`loopback.pkg.test resolves to 127.0.0.1 (loopback)`);
    expect(output).toContain('internal.test resolves to 10.0.0.7 (private)');
    expect(output).toContain('metadata.test resolves to 169.254.169.254 (link-local)');
    expect(output).toContain(`a.b.pkg.test:${port} is not on the allowlist`);
    expect(output).toContain(`pkg.test:${port} is not on the allowlist`);
    expect(output).toContain(`a.pkg.test is allowed on port ${port}, not ${gitHttp.port}`);
    expect(output).not.toMatch(/: 200 bytes/);

    // With 127.0.0.1 allowed exactly, the relay dials it and skips 127.0.0.2.
    const allowed = await run(
      testSettings(),
      { repo: repo(), steps: [{ name: 'allowed', run: `node net.js http://a.pkg.test:${port}/hello` }], network: { allow: [`*.pkg.test:${port}`, `127.0.0.1:${port}`] } },
      { egressLookup: twoLoopbacks },
    );
    expect(allowed.output).toContain(`GET http://a.pkg.test:${port}/hello: 200 bytes 17 sha256`);
    expect(allowed.result.status).toBe('passed');
    expect(egressEvents(allowed.result)).toMatchObject([{ host: 'a.pkg.test', address: '127.0.0.1', outcome: 'closed', allowed: true }]);
  });

  it('cuts a download at the byte cap with a clear error, and refuses what comes after', async () => {
    const { result, output } = await run(
      testSettings(),
      {
        repo: repo(),
        steps: [
          { name: 'big', run: `node net.js http://a.pkg.test:${counting.port}/blob; echo "exit $?"` },
          { name: 'after', run: `node net.js http://a.pkg.test:${counting.port}/sent; echo "exit $?"` },
        ],
        network: { allow: [`a.pkg.test:${counting.port}`, `127.0.0.1:${counting.port}`], maxBytes: '8m' },
      },
      { egressLookup: lookup },
    );
    expect(output).toContain(`[big] [asp: egress connection to a.pkg.test:${counting.port} cut: the task's egress byte cap of 8.0 MiB is reached (--egress-bytes)]`);
    expect(output).toMatch(/\[big\] GET \S+: (cut|aborted) after \d+ bytes/);
    expect(output).toContain(`[after] [asp: egress to a.pkg.test:${counting.port} refused: the task's egress byte cap of 8.0 MiB is spent (--egress-bytes)]`);
    const cut = egressSpans(result).find((span) => span.metadata.outcome === 'cut');
    expect(cut).toMatchObject({ level: 'ERROR', statusMessage: expect.stringContaining('byte cap') });
    expect(Number((cut?.output as { bytesIn: number }).bytesIn)).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(result.status).toBe('passed');
  });

  it('caps connections open at once and how long one stays open', async () => {
    const target = `a.pkg.test:${counting.port}`;
    const { result, output } = await run(
      testSettings(),
      {
        repo: repo(),
        steps: [{ name: 'hold', run: `node hold.js ${target} 6000 & node hold.js ${target} 6000 & sleep 0.5; node hold.js ${target} 6000; wait` }],
        network: { allow: [target, `127.0.0.1:${counting.port}`], maxConnections: 2, connectionTimeout: '2s' },
      },
      { egressLookup: lookup },
    );
    expect(result.status).toBe('passed');
    expect(output).toContain(`hold ${target}: 403 2 connections are open already, the task's cap (--egress-connections)`);
    expect(output.match(new RegExp(`hold ${target}: 200`, 'g'))).toHaveLength(2);
    expect(output).toContain(`[asp: egress connection to ${target} cut: it was open longer than 2.0s (--egress-timeout)]`);
    expect(output).not.toContain('still open after');
    expect(egressSpans(result).filter((span) => span.metadata.outcome === 'cut')).toHaveLength(2);
  });

  it('keeps the model gateway answering during a large download, which moves only as fast as its client reads', async () => {
    const settings = testSettings({ models: readSettings({ OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.url, ASP_MODEL: 'openai:test-model' }).models });
    const probe = `http://a.pkg.test:${counting.port}/sent`;
    const { result, output } = await run(
      settings,
      {
        repo: repo(),
        steps: [
          { name: 'flow', run: `node flow.js http://a.pkg.test:${counting.port}/blob` },
          { name: 'probe', run: `node net.js http://a.pkg.test:${counting.port}/blob --slow --probe ${probe}` },
        ],
        network: { allow: [`a.pkg.test:${counting.port}`, `127.0.0.1:${counting.port}`] },
      },
      { egressLookup: lookup },
    );
    expect(result.status).toBe('passed');
    for (let index = 0; index < 5; index += 1) expect(output).toMatch(new RegExp(`\\[flow\\] model ${index}: 200 answer to call ${index} in \\d+ ms, download still running`));
    expect(output).toContain(`[flow] GET http://a.pkg.test:${counting.port}/blob: 200 bytes ${BLOB_BYTES} sha256 ${counting.sha256}`);
    // Read 24 MiB in, the server had handed the kernel far from all 64 MiB: the relay held it back (windows and
    // socket buffers are a few MiB); without flow control it would have sent all of it in the first half second.
    const probed = /\[probe\] probe at (\d+): sent (\d+)/.exec(output);
    const [read, sent] = [Number(probed?.[1]), Number(probed?.[2])];
    expect(read).toBeGreaterThanOrEqual(24 * 1024 * 1024);
    expect(sent).toBeGreaterThan(read);
    expect(sent - read).toBeLessThan(24 * 1024 * 1024);
    expect(output).toContain(`[probe] GET http://a.pkg.test:${counting.port}/blob: 200 bytes ${BLOB_BYTES} sha256 ${counting.sha256}`);
  });

  it('through the CLI: a step reaches 127.0.0.1 allowed exactly; bad --allow-host values are refused before anything runs', async () => {
    const source = repo();
    const ok = await asp(['run', '--repo', source, '--allow-host', `127.0.0.1:${other.port}`, '--step', `get=NO_PROXY= no_proxy= node net.js http://127.0.0.1:${other.port}/hello`, '--json'], {
      DOCKER_HOST: process.env.DOCKER_HOST,
      ASP_WORKSPACES: testSettings().workspacesRoot,
    });
    expect(ok.code).toBe(0);
    const result = JSON.parse(ok.stdout) as TaskResult;
    expect(result.egress).toMatchObject({ connections: 1, refused: 0, bytesIn: expect.any(Number) });
    expect(ok.stderr).toContain(`GET http://127.0.0.1:${other.port}/hello: 200 bytes`);

    // A batch line carries the same as "network"; the report has each task's egress.
    const list = path.join(scratch, 'tasks.jsonl');
    const report = path.join(scratch, 'report.json');
    const line = { id: 'egress-batch', repo: source, steps: [{ name: 'get', run: `NO_PROXY= node net.js http://127.0.0.1:${other.port}/hello` }], network: { allow: [`127.0.0.1:${other.port}`] } };
    writeFileSync(list, JSON.stringify(line) + '\n');
    const batch = await asp(['batch', list, '--report', report], { DOCKER_HOST: process.env.DOCKER_HOST, ASP_WORKSPACES: testSettings().workspacesRoot });
    expect(batch.code, batch.stderr).toBe(0);
    const tasks = (JSON.parse(readFileSync(report, 'utf8')) as { tasks: Array<{ egress?: unknown }> }).tasks;
    expect(tasks[0]?.egress).toMatchObject({ connections: 1, refused: 0, bytesIn: expect.any(Number) });
    writeFileSync(list, JSON.stringify({ ...line, network: { allow: ['ftp://x.org'] } }) + '\n');
    const invalid = await asp(['batch', list], { DOCKER_HOST: process.env.DOCKER_HOST });
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/tasks\.jsonl:1: network\.allow\.0 "ftp:\/\/x\.org" is a URL/);

    const bad: Array<[string[], RegExp]> = [
      [['--allow-host', 'https://registry.npmjs.org'], /--allow-host #1 "https:\/\/registry.npmjs.org" is a URL/],
      [['--allow-host', 'registry.npmjs.org/simple'], /has a path/],
      [['--allow-host', 'registry.npmjs.org:0'], /a port is a number from 1 to 65535/],
      [['--allow-host', 'registry.npmjs.org:70000'], /a port is a number from 1 to 65535/],
      [['--allow-host', 'a.*.org'], /a wildcard is "\*\." before a name/],
      [['--allow-host', '*.org'], /whole top-level domain/],
      [['--allow-host', 'bad_name!'], /is not a host name/],
      [['--allow-host', '::1'], /put it in brackets/],
      [['--egress-bytes', '1g'], /--egress-bytes without --allow-host/],
      [['--allow-host', 'x.org', '--egress-connections', '0'], /--egress-connections must be at least 1/],
      [['--allow-host', 'x.org', '--egress-timeout', 'soon'], /--egress-timeout "soon" is not a duration/],
    ];
    for (const [flags, message] of bad) {
      const refused = await asp(['run', '--repo', source, '--step', 't=true', ...flags], { DOCKER_HOST: process.env.DOCKER_HOST });
      expect(refused.code, flags.join(' ')).toBe(2);
      expect(refused.stderr, flags.join(' ')).toMatch(message);
      expect(refused.stderr.trim().split('\n').length, flags.join(' ')).toBeLessThanOrEqual(2);
    }
  });
});
