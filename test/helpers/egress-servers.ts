import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';

/**
 * Servers on 127.0.0.1 for the egress-proxy integration tests: a git smart-HTTP remote, a blob server for large
 * transfers, a one-package npm registry, and a throwaway CA so the HTTPS variants can be trusted by a client.
 * Every server records "METHOD /path?query" of each request it sees, so a test can tell what got through the proxy.
 */

const run = promisify(execFile);
const OPENSSL = '/usr/bin/openssl';
const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TestServer {
  /** `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, no trailing slash. */
  url: string;
  port: number;
  /** "METHOD /path?query" of every request, in arrival order. */
  requests: string[];
  /** Closes the listener and every open connection; calling it again is a no-op. */
  close(): Promise<void>;
}

export interface TestCa {
  caFile: string;
  certFile: string;
  keyFile: string;
}

// One config for both certificates, so nothing depends on the host's openssl.cnf defaults.
const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost@EXTRA@
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

/**
 * A CA and a server certificate it signed for 127.0.0.1 and localhost, valid one day. A real leaf under a CA (not a
 * self-signed server cert) because clients trust it through a CA bundle (GIT_SSL_CAINFO, NODE_EXTRA_CA_CERTS), and
 * GnuTLS and Node refuse a CA:TRUE certificate as the server's own.
 */
/** `names`: more DNS names the server certificate is good for (test names the relay resolves to 127.0.0.1). */
export async function makeTestCa(dir: string, names: string[] = []): Promise<TestCa> {
  mkdirSync(dir, { recursive: true });
  const file = (name: string) => path.join(dir, name);
  const config = file('openssl.cnf');
  writeFileSync(config, OPENSSL_CONFIG.replace('@EXTRA@', names.map((name) => `, DNS:${name}`).join('')));
  const caFile = file('ca.pem');
  const caKey = file('ca-key.pem');
  const certFile = file('server.pem');
  const keyFile = file('server-key.pem');
  const csr = file('server.csr');
  const rsa = ['-newkey', 'rsa:2048', '-nodes'];
  await run(OPENSSL, ['req', '-x509', ...rsa, '-keyout', caKey, '-out', caFile, '-days', '1', '-subj', '/CN=asp-runner test CA', '-config', config, '-extensions', 'ca_ext']);
  await run(OPENSSL, ['req', '-new', ...rsa, '-keyout', keyFile, '-out', csr, '-subj', '/CN=localhost', '-config', config]);
  // A random serial rather than -CAcreateserial: no serial file left behind, and two CAs never issue the same one.
  const serial = `0x${randomBytes(8).toString('hex')}`;
  await run(OPENSSL, ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', serial, '-days', '1', '-extfile', config, '-extensions', 'leaf_ext', '-out', certFile]);
  return { caFile, certFile, keyFile };
}

type Handler = (request: http.IncomingMessage, response: http.ServerResponse, self: { url: string; port: number }) => void | Promise<void>;

/** Listens on an ephemeral port of 127.0.0.1, records each request, and turns a handler failure into a 500. */
async function listen(handler: Handler, tls: TlsFiles | undefined, onClose: () => void = () => {}): Promise<TestServer> {
  const requests: string[] = [];
  const self = { url: '', port: 0 };
  const serve = (request: http.IncomingMessage, response: http.ServerResponse) => {
    requests.push(`${request.method ?? ''} ${originForm(request.url)}`);
    Promise.resolve()
      .then(() => handler(request, response, self))
      .catch((error: unknown) => fail(response, error instanceof Error ? error.message : String(error)));
  };
  const server = tls ? https.createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, serve) : http.createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  // A TCP listener's address is always an AddressInfo (a string only for pipes).
  self.port = (server.address() as AddressInfo).port;
  self.url = `${tls ? 'https' : 'http'}://127.0.0.1:${self.port}`;
  let closing: Promise<void> | undefined;
  return {
    url: self.url,
    port: self.port,
    requests,
    close() {
      closing ??= new Promise<void>((resolve) => {
        onClose();
        server.close(() => resolve());
        // Keep-alive sockets (git, npm) would otherwise hold close() open until they time out.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** The path and query of a request target; a proxy may forward the absolute form `http://host/path`. */
function originForm(target: string | undefined): string {
  const url = new URL(target ?? '/', 'http://origin.invalid');
  return `${url.pathname}${url.search}`;
}

function fail(response: http.ServerResponse, message: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(500, { 'content-type': 'text/plain' });
  response.end(`${message}\n`);
}

/**
 * Git smart HTTP from `repoDir` (the parent of the bare repositories), by running the host's git-http-backend as a
 * CGI per request, as Apache or nginx+fcgiwrap would. Read-only: receive-pack stays off (no REMOTE_USER).
 */
export async function startGitServer(options: { repoDir: string; tls?: TlsFiles }): Promise<TestServer> {
  const children = new Set<ChildProcess>();
  const handler: Handler = (request, response) => {
    const url = new URL(request.url ?? '/', 'http://origin.invalid');
    // Git gzips upload-pack requests over 1 KiB; once unzipped, the length is unknown and the backend reads to EOF.
    const gzipped = /^(x-)?gzip$/i.test(request.headers['content-encoding'] ?? '');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      // The host user's git config must not change what the remote serves.
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_PROJECT_ROOT: options.repoDir,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: request.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: request.headers['content-type'] ?? '',
      REMOTE_ADDR: request.socket.remoteAddress ?? '',
    };
    const length = request.headers['content-length'];
    if (length !== undefined && !gzipped) env.CONTENT_LENGTH = length;
    const protocol = request.headers['git-protocol'];
    if (typeof protocol === 'string') env.GIT_PROTOCOL = protocol;

    const child = spawn(GIT_HTTP_BACKEND, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stderr = '';
    let bodyError = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // The backend may exit without reading all of stdin (an error reply); that EPIPE is not the failure to report.
    pipeline(gzipped ? request.pipe(createGunzip()) : request, child.stdin).catch((error: unknown) => {
      bodyError = error instanceof Error ? error.message : String(error);
    });
    response.on('close', () => child.kill());

    let head = Buffer.alloc(0);
    const readHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const parsed = parseCgiHead(head);
      if (!parsed) return;
      child.stdout.off('data', readHead);
      for (const [name, values] of parsed.headers) response.setHeader(name, values);
      response.writeHead(parsed.status);
      response.write(head.subarray(parsed.bodyStart));
      child.stdout.pipe(response);
    };
    child.stdout.on('data', readHead);
    child.on('error', (error) => fail(response, `git-http-backend: ${error.message}`));
    child.on('close', (code, signal) => {
      children.delete(child);
      if (response.headersSent) return;
      const why = code === 0 ? 'no CGI header block' : `exit ${code ?? signal ?? '?'}`;
      fail(response, `git-http-backend: ${why}: ${(stderr || bodyError).trim()}`);
    });
  };
  return listen(handler, options.tls, () => {
    for (const child of children) child.kill();
  });
}

/** The CGI reply's header block (RFC 3875 §6): `Status: 404 Not Found` and the other headers, up to a blank line. */
function parseCgiHead(buffer: Buffer): { status: number; headers: Map<string, string[]>; bodyStart: number } | undefined {
  const crlf = buffer.indexOf('\r\n\r\n');
  const lf = buffer.indexOf('\n\n');
  const candidates = [crlf === -1 ? undefined : { end: crlf, bodyStart: crlf + 4 }, lf === -1 ? undefined : { end: lf, bodyStart: lf + 2 }];
  const found = candidates.filter((candidate) => candidate !== undefined).sort((a, b) => a.end - b.end)[0];
  if (!found) return undefined;
  let status = 200;
  const headers = new Map<string, string[]>();
  for (const line of buffer.subarray(0, found.end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers.set(name, [...(headers.get(name) ?? []), value]);
  }
  return { status, headers, bodyStart: found.bodyStart };
}

const BLOCK_SIZE = 64 * 1024;

/** 64 KiB that do not compress (SHA-256 in counter mode), so a transfer's size on the wire is its real size. */
function pseudoRandomBlock(): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  for (let offset = 0, counter = 0; offset < BLOCK_SIZE; offset += 32, counter += 1) {
    createHash('sha256').update(`asp-blob-${counter}`).digest().copy(block, offset);
  }
  return block;
}

function* blobChunks(block: Buffer, bytes: number): Generator<Buffer> {
  for (let sent = 0; sent < bytes; sent += block.length) yield block.subarray(0, Math.min(block.length, bytes - sent));
}

/** GET /blob streams `bytes` bytes; GET /sha256 gives their hex digest; GET /hello names the port; else 404. */
export async function startBlobServer(options: { bytes: number; tls?: TlsFiles }): Promise<TestServer> {
  const block = pseudoRandomBlock();
  let digest: string | undefined;
  const sha256 = () => {
    if (digest === undefined) {
      const hash = createHash('sha256');
      for (const chunk of blobChunks(block, options.bytes)) hash.update(chunk);
      digest = hash.digest('hex');
    }
    return digest;
  };
  const handler: Handler = async (request, response, self) => {
    const route = `${request.method ?? ''} ${new URL(request.url ?? '/', 'http://origin.invalid').pathname}`;
    const text = (status: number, body: string) => {
      response.writeHead(status, { 'content-type': 'text/plain' });
      response.end(body);
    };
    switch (route) {
      case 'GET /blob':
        response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(options.bytes) });
        // pipeline waits for 'drain', so memory stays at a block or two whatever `bytes` is.
        await pipeline(Readable.from(blobChunks(block, options.bytes), { objectMode: false }), response).catch(() => {
          // The client went away mid-body (a proxy cutting it off is a case under test): nothing to answer.
        });
        return;
      case 'GET /sha256':
        return text(200, `${sha256()}\n`);
      case 'GET /hello':
        return text(200, `hello from ${self.port}\n`);
      default:
        return text(404, 'not found\n');
    }
  };
  return listen(handler, options.tls);
}

/**
 * A registry that knows one package: GET /<name> is its packument, GET /<name>/-/<base>-<version>.tgz its tarball.
 * Enough for `npm view`, `npm pack` and `npm install` against `--registry <url>`.
 */
export async function startNpmRegistry(options: { name: string; version: string; files: Record<string, string> }): Promise<TestServer> {
  const { name, version } = options;
  const tarball = await packTarball(options);
  const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
  const shasum = createHash('sha1').update(tarball).digest('hex');
  // npm names a scoped package's tarball by its bare name: @scope/pkg/-/pkg-1.0.0.tgz.
  const tarballPath = `/${name}/-/${name.split('/').pop() ?? name}-${version}.tgz`;

  const handler: Handler = (request, response, self) => {
    // npm asks for a scoped package as /@scope%2fpkg.
    const target = decodeURIComponent(new URL(request.url ?? '/', 'http://origin.invalid').pathname);
    const send = (status: number, body: Buffer | string, type: string) => {
      response.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
      response.end(body);
    };
    if (request.method !== 'GET') return send(404, JSON.stringify({ error: 'not found' }), 'application/json');
    if (target === `/${name}`) {
      const packument = {
        _id: name,
        name,
        'dist-tags': { latest: version },
        versions: { [version]: { _id: `${name}@${version}`, name, version, dist: { tarball: `${self.url}${tarballPath}`, integrity, shasum } } },
      };
      return send(200, JSON.stringify(packument), 'application/json');
    }
    if (target === tarballPath) return send(200, tarball, 'application/octet-stream');
    return send(404, JSON.stringify({ error: 'not found' }), 'application/json');
  };
  return listen(handler, undefined);
}

/**
 * The package as npm publishes it: every entry under `package/`, owned by 0:0 so no host uid leaks in. A `package.json`
 * in `files` replaces the generated `{ name, version }` one.
 */
async function packTarball(options: { name: string; version: string; files: Record<string, string> }): Promise<Buffer> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'asp-npm-pack-'));
  try {
    const files = { 'package.json': `${JSON.stringify({ name: options.name, version: options.version }, null, 2)}\n`, ...options.files };
    for (const [name, content] of Object.entries(files)) {
      const target = path.join(work, 'package', name);
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, content);
    }
    const out = path.join(work, 'package.tgz');
    await run('tar', ['-czf', out, '--owner=0', '--group=0', '--numeric-owner', '-C', work, 'package']);
    return readFileSync(out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A PEP 503 "simple" index that knows one pure-Python package: GET /simple/<name>/ links its wheel (with its
 * sha256, which pip checks), GET /files/<wheel> serves it. The wheel is made by the host's python3 (zipfile), so
 * `pip install --index-url <url>/simple/ <name>` installs it for real.
 */
export async function startPypiIndex(options: { name: string; version: string; module: string; tls?: TlsFiles }): Promise<TestServer> {
  const { name, version } = options;
  const dist = name.replace(/[-.]+/g, '_');
  const wheelName = `${dist}-${version}-py3-none-any.whl`;
  const wheel = await buildWheel(dist, version, options.module);
  const digest = createHash('sha256').update(wheel).digest('hex');
  const normalized = name.toLowerCase().replace(/[-_.]+/g, '-');
  const handler: Handler = (request, response) => {
    const target = new URL(request.url ?? '/', 'http://origin.invalid').pathname;
    const send = (status: number, body: Buffer | string, type: string) => {
      response.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
      response.end(body);
    };
    if (target === `/simple/${normalized}/` || target === `/simple/${normalized}`) {
      return send(200, `<!DOCTYPE html><html><body><a href="/files/${wheelName}#sha256=${digest}">${wheelName}</a></body></html>\n`, 'text/html');
    }
    if (target === `/files/${wheelName}`) return send(200, wheel, 'application/octet-stream');
    return send(404, 'not found\n', 'text/plain');
  };
  return listen(handler, options.tls);
}

const WHEEL_SCRIPT = String.raw`
import base64, hashlib, sys, zipfile
out, dist, version, module = sys.argv[1:5]
files = {
  dist + '/__init__.py': module,
  dist + '-' + version + '.dist-info/METADATA': 'Metadata-Version: 2.1\nName: ' + dist + '\nVersion: ' + version + '\n',
  dist + '-' + version + '.dist-info/WHEEL': 'Wheel-Version: 1.0\nGenerator: asp-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
}
record = dist + '-' + version + '.dist-info/RECORD'
lines = []
with zipfile.ZipFile(out, 'w') as archive:
  for path, text in files.items():
    data = text.encode()
    archive.writestr(path, data)
    lines.append(path + ',sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode() + ',' + str(len(data)))
  lines.append(record + ',,')
  archive.writestr(record, '\n'.join(lines) + '\n')
`;

async function buildWheel(dist: string, version: string, module: string): Promise<Buffer> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'asp-wheel-'));
  try {
    const out = path.join(work, 'package.whl');
    await run('python3', ['-c', WHEEL_SCRIPT, out, dist, version, module]);
    return readFileSync(out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Serves `body` on every path (plain HTTP): the simplest remote for a download through the proxy. */
export function serveBytes(body: Buffer): Promise<TestServer> {
  return listen((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    response.end(body);
  }, undefined);
}
