import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCa, startBlobServer, startGitServer, startNpmRegistry, type TestCa, type TestServer } from '../helpers/egress-servers.js';

// The servers live in this process, so every client runs asynchronously: a sync child would block their event loop.
const run = promisify(execFile);

let scratch = '';
let ca: TestCa;
let gitRoot = '';
const servers: TestServer[] = [];

/** Starts a server and closes it after the file. */
async function started(server: Promise<TestServer>): Promise<TestServer> {
  servers.push(await server);
  return servers[servers.length - 1]!;
}

/**
 * The host's environment without what would send a client elsewhere or trust for it: proxy variables, npm settings
 * inherited from npx, and git settings (the host sets GIT_SSL_CAINFO).
 */
function clientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const kept = Object.entries(process.env).filter(([name]) => !/proxy$|^npm_|^GIT_/i.test(name));
  return { ...Object.fromEntries(kept), GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', ...extra };
}

function tempDir(label: string): string {
  return mkdtempSync(path.join(scratch, `${label}-`));
}

/** GET with Node's own client; `ca` trusts the test CA for https. */
function get(url: string, ca?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; length: number; sha256: string; text: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (response: http.IncomingMessage) => {
      const hash = createHash('sha256');
      let length = 0;
      let head = '';
      response.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        length += chunk.length;
        if (head.length < 4096) head += chunk.toString('latin1');
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, length, sha256: hash.digest('hex'), text: head }));
      response.on('error', reject);
    };
    const request = url.startsWith('https:') ? https.get(url, { ca }, onResponse) : http.get(url, onResponse);
    request.on('error', reject);
  });
}

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-egress-servers-'));
  ca = await makeTestCa(path.join(scratch, 'ca'));

  // A bare repository `repo.git` with a main branch and forty topic branches, one commit each: cloning it sends
  // forty want lines, which pushes the upload-pack request past the 1 KiB where git starts to gzip it.
  const env = clientEnv({ GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 'test@example.com', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 'test@example.com' });
  const work = path.join(scratch, 'work');
  execFileSync('git', ['init', '-q', '-b', 'main', work], { env });
  writeFileSync(path.join(work, 'README.md'), 'hello through the proxy\n');
  execFileSync('git', ['-C', work, 'add', '.'], { env });
  execFileSync('git', ['-C', work, 'commit', '-q', '-m', 'initial'], { env });
  const main = execFileSync('git', ['-C', work, 'rev-parse', 'HEAD'], { env, encoding: 'utf8' }).trim();
  const topics = Array.from({ length: 40 }, (_, index) => {
    const message = `topic ${index}\n`;
    return `commit refs/heads/topic-${index}\ncommitter Test <test@example.com> 1700000000 +0000\ndata ${message.length}\n${message}from ${main}\n\n`;
  });
  execFileSync('git', ['-C', work, 'fast-import', '--quiet'], { env, input: topics.join('') });
  gitRoot = path.join(scratch, 'git-root');
  execFileSync('git', ['clone', '-q', '--bare', work, path.join(gitRoot, 'repo.git')], { env });
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('makeTestCa', () => {
  it('issues a server certificate for 127.0.0.1 and localhost that chains to the CA', async () => {
    const verified = await run('/usr/bin/openssl', ['verify', '-CAfile', ca.caFile, ca.certFile]);
    expect(verified.stdout).toContain(': OK');
    const leaf = await run('/usr/bin/openssl', ['x509', '-in', ca.certFile, '-noout', '-ext', 'subjectAltName,basicConstraints,extendedKeyUsage']);
    expect(leaf.stdout).toMatch(/IP Address:127\.0\.0\.1/);
    expect(leaf.stdout).toMatch(/DNS:localhost/);
    expect(leaf.stdout).toMatch(/CA:FALSE/);
    expect(leaf.stdout).toMatch(/TLS Web Server Authentication/);
  });
});

describe('startGitServer', () => {
  it('serves a clone over plain HTTP, including a gzip-encoded upload-pack request', async () => {
    const server = await started(startGitServer({ repoDir: gitRoot }));
    const dest = path.join(tempDir('clone-http'), 'repo');
    const trace = path.join(scratch, 'curl-trace.txt');

    await run('git', ['clone', '-q', `${server.url}/repo.git`, dest], { env: clientEnv({ GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: '1' }) });

    expect(readFileSync(path.join(dest, 'README.md'), 'utf8')).toBe('hello through the proxy\n');
    const branches = await run('git', ['-C', dest, 'branch', '-r'], { env: clientEnv() });
    expect(branches.stdout.match(/origin\/topic-/g)).toHaveLength(40);
    expect(readFileSync(trace, 'utf8')).toMatch(/Content-Encoding: gzip/i);
    expect(server.requests).toContain('GET /repo.git/info/refs?service=git-upload-pack');
    expect(server.requests).toContain('POST /repo.git/git-upload-pack');
  });

  it('serves a clone over HTTPS to a client that trusts the test CA', async () => {
    const server = await started(startGitServer({ repoDir: gitRoot, tls: ca }));
    const dest = path.join(tempDir('clone-https'), 'repo');

    await run('git', ['clone', '-q', `${server.url}/repo.git`, dest], { env: clientEnv({ GIT_SSL_CAINFO: ca.caFile }) });

    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(readFileSync(path.join(dest, 'README.md'), 'utf8')).toBe('hello through the proxy\n');
  });

  it('is refused by a client that does not trust the test CA', async () => {
    const server = await started(startGitServer({ repoDir: gitRoot, tls: ca }));
    const dest = path.join(tempDir('clone-untrusted'), 'repo');

    await expect(run('git', ['clone', '-q', `${server.url}/repo.git`, dest], { env: clientEnv() })).rejects.toMatchObject({ stderr: expect.stringMatching(/certificate/i) });
  });

  it("passes on the backend's status for a repository that does not exist", async () => {
    const server = await started(startGitServer({ repoDir: gitRoot }));

    const reply = await get(`${server.url}/missing.git/info/refs?service=git-upload-pack`);

    expect(reply.status).toBe(404);
  });
});

describe('startBlobServer', () => {
  // Not a multiple of the 64 KiB block, so the short last chunk is covered.
  const bytes = 5 * 1024 * 1024 + 12_345;

  it('streams exactly the requested bytes over HTTP and reports their sha256', async () => {
    const server = await started(startBlobServer({ bytes }));

    const blob = await get(`${server.url}/blob`);
    const digest = await get(`${server.url}/sha256`);

    expect(blob.status).toBe(200);
    expect(blob.headers['content-length']).toBe(String(bytes));
    expect(blob.headers['content-type']).toBe('application/octet-stream');
    expect(blob.length).toBe(bytes);
    expect(digest.text.trim()).toBe(blob.sha256);
  });

  it('streams the same body over HTTPS to a client that trusts the test CA', async () => {
    const plain = await started(startBlobServer({ bytes }));
    const secure = await started(startBlobServer({ bytes, tls: ca }));
    const caPem = readFileSync(ca.caFile, 'utf8');

    const blob = await get(`${secure.url}/blob`, caPem);

    expect(blob.length).toBe(bytes);
    expect(blob.sha256).toBe((await get(`${plain.url}/sha256`)).text.trim());
  });

  it('names its port on /hello, answers 404 elsewhere, and records each request', async () => {
    const server = await started(startBlobServer({ bytes: 1 }));

    expect((await get(`${server.url}/hello`)).text).toBe(`hello from ${server.port}\n`);
    expect((await get(`${server.url}/nothing-here`)).status).toBe(404);
    expect(server.requests).toEqual(['GET /hello', 'GET /nothing-here']);
  });
});

describe('startNpmRegistry', () => {
  const pkg = { name: 'asp-egress-probe', version: '1.2.3', files: { 'index.js': "module.exports = 'probe';\n", 'lib/extra.txt': 'nested\n' } };

  /** npm against this registry only: its own cache and an empty user config, so nothing of the host's is used. */
  function npm(registry: TestServer, cwd: string, ...args: string[]) {
    const home = tempDir('npm-home');
    const userconfig = path.join(home, 'npmrc');
    writeFileSync(userconfig, '');
    const flags = ['--registry', registry.url, '--cache', path.join(home, 'cache'), '--userconfig', userconfig, '--no-update-notifier', '--loglevel', 'error'];
    return run('npm', [...args, ...flags], { cwd, env: clientEnv({ HOME: home }) });
  }

  it('answers npm view with the latest version', async () => {
    const registry = await started(startNpmRegistry(pkg));

    const view = await npm(registry, tempDir('npm-view'), 'view', pkg.name, 'version');

    expect(view.stdout.trim()).toBe(pkg.version);
    expect(registry.requests).toContain(`GET /${pkg.name}`);
  });

  it('serves a tarball that npm install verifies and unpacks', async () => {
    const registry = await started(startNpmRegistry(pkg));
    const project = tempDir('npm-install');
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));

    await npm(registry, project, 'install', `${pkg.name}@${pkg.version}`, '--no-audit', '--no-fund');

    const installed = path.join(project, 'node_modules', pkg.name);
    expect(readFileSync(path.join(installed, 'index.js'), 'utf8')).toBe(pkg.files['index.js']);
    expect(readFileSync(path.join(installed, 'lib', 'extra.txt'), 'utf8')).toBe('nested\n');
    expect(JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8'))).toMatchObject({ name: pkg.name, version: pkg.version });
    expect(registry.requests).toContain(`GET /${pkg.name}/-/${pkg.name}-${pkg.version}.tgz`);
  });

  it('routes an absolute-form request target, as a proxy may forward it, by its path', async () => {
    const registry = await started(startNpmRegistry(pkg));

    const packument = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = http.get({ host: '127.0.0.1', port: registry.port, path: `http://registry.example/${pkg.name}` }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      });
      request.on('error', reject);
    });

    expect(packument.status).toBe(200);
    expect(JSON.parse(packument.body)).toMatchObject({ name: pkg.name, 'dist-tags': { latest: pkg.version } });
    expect(registry.requests).toEqual([`GET /${pkg.name}`]);
  });

  it('answers 404 with a JSON error for anything else', async () => {
    const registry = await started(startNpmRegistry(pkg));

    const reply = await get(`${registry.url}/some-other-package`);

    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.text)).toEqual({ error: 'not found' });
  });
});
