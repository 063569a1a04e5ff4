import { createHash } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { discoverDaemon, type DiscoveryWorld } from '../../src/docker/daemon-address.js';

const HOME = '/home/dev';

/** A made-up machine: these files (path → text) and these sockets exist, nothing else. */
function world(env: NodeJS.ProcessEnv, files: Record<string, string> = {}, sockets: string[] = []): DiscoveryWorld {
  return { env, home: HOME, uid: 1000, readFile: (file) => files[file], isSocket: (file) => sockets.includes(file) };
}

const contextId = (name: string) => createHash('sha256').update(name).digest('hex');
const meta = (name: string, host: string, extra: Record<string, unknown> = {}) => ({
  [path.join(HOME, '.docker', 'contexts', 'meta', contextId(name), 'meta.json')]: JSON.stringify({ Name: name, Metadata: {}, Endpoints: { docker: { Host: host, SkipTLSVerify: false, ...extra } } }),
});

function failure(run: () => unknown): AspError {
  try {
    run();
  } catch (error) {
    if (error instanceof AspError) return error;
    throw error;
  }
  throw new Error('expected an AspError');
}

describe('which daemon asp talks to, found as the docker CLI finds it', () => {
  it('DOCKER_HOST first, over a context named in DOCKER_CONTEXT and in config.json', () => {
    const files = { ...meta('ci', 'tcp://ci:2375'), [`${HOME}/.docker/config.json`]: '{"currentContext":"ci"}' };
    expect(discoverDaemon(world({ DOCKER_HOST: 'unix:///tmp/d.sock', DOCKER_CONTEXT: 'ci' }, files))).toEqual({ host: 'unix:///tmp/d.sock', source: 'DOCKER_HOST', tls: undefined });
  });

  it('DOCKER_CONTEXT over config.json, and its endpoint from contexts/meta/<sha256 of the name>', () => {
    const files = { ...meta('ci', 'tcp://ci:2375'), ...meta('desk', 'unix:///desk.sock'), [`${HOME}/.docker/config.json`]: '{"currentContext":"desk"}' };
    expect(discoverDaemon(world({ DOCKER_CONTEXT: 'ci' }, files))).toMatchObject({ host: 'tcp://ci:2375', source: 'context "ci" (DOCKER_CONTEXT)', tls: undefined });
    expect(discoverDaemon(world({}, files))).toMatchObject({ host: 'unix:///desk.sock', source: `context "desk" (${HOME}/.docker/config.json)` });
  });

  it('DOCKER_CONFIG moves the config dir, contexts and all', () => {
    const files = {
      ['/etc/dc/config.json']: '{"currentContext":"x"}',
      [path.join('/etc/dc', 'contexts', 'meta', contextId('x'), 'meta.json')]: JSON.stringify({ Endpoints: { docker: { Host: 'tcp://x:1' } } }),
    };
    expect(discoverDaemon(world({ DOCKER_CONFIG: '/etc/dc' }, files))).toMatchObject({ host: 'tcp://x:1', source: 'context "x" (/etc/dc/config.json)' });
  });

  it('the "default" context is the sockets, as with the docker CLI', () => {
    const files = { [`${HOME}/.docker/config.json`]: '{"currentContext":"default"}' };
    expect(discoverDaemon(world({}, files, ['/var/run/docker.sock']))).toMatchObject({ host: 'unix:///var/run/docker.sock', source: 'the Docker socket' });
  });

  it("a context's TLS files (contexts/tls/<id>/docker/) make its tcp endpoint TLS, verified unless SkipTLSVerify", () => {
    const tlsDir = path.join(HOME, '.docker', 'contexts', 'tls', contextId('prod'), 'docker');
    const files = { ...meta('prod', 'tcp://prod:2376'), [`${tlsDir}/ca.pem`]: 'CA', [`${tlsDir}/cert.pem`]: 'CERT', [`${tlsDir}/key.pem`]: 'KEY' };
    expect(discoverDaemon(world({ DOCKER_CONTEXT: 'prod' }, files)).tls).toEqual({ verify: true, ca: 'CA', cert: 'CERT', key: 'KEY', from: tlsDir });
    const skipping = { ...files, ...meta('prod', 'tcp://prod:2376', { SkipTLSVerify: true }) };
    expect(discoverDaemon(world({ DOCKER_CONTEXT: 'prod' }, skipping)).tls?.verify).toBe(false);
  });

  it('no DOCKER_HOST and no context: the first of the usual sockets that exists, each named', () => {
    const runtime = '/run/user/1000';
    const cases: Array<[string, string]> = [
      ['/var/run/docker.sock', 'the Docker socket'],
      [`${runtime}/docker.sock`, 'the rootless Docker socket ($XDG_RUNTIME_DIR/docker.sock)'],
      [`${HOME}/.docker/run/docker.sock`, "Docker Desktop's socket (~/.docker/run/docker.sock)"],
      [`${HOME}/.colima/default/docker.sock`, "Colima's socket (~/.colima/default/docker.sock)"],
      ['/run/podman/podman.sock', "Podman's socket (/run/podman/podman.sock)"],
      [`${runtime}/podman/podman.sock`, "rootless Podman's socket ($XDG_RUNTIME_DIR/podman/podman.sock)"],
    ];
    for (const [socket, what] of cases) expect(discoverDaemon(world({ XDG_RUNTIME_DIR: runtime }, {}, [socket]))).toEqual({ host: `unix://${socket}`, source: what, tls: undefined });
    // Rootful first when both are there; XDG_RUNTIME_DIR unset falls back to /run/user/<uid>.
    expect(discoverDaemon(world({}, {}, ['/var/run/docker.sock', `${runtime}/docker.sock`])).host).toBe('unix:///var/run/docker.sock');
    expect(discoverDaemon(world({}, {}, [`${runtime}/docker.sock`])).host).toBe(`unix://${runtime}/docker.sock`);
  });

  it('no socket at all: the default socket, saying none was found (the first call then says nothing answers there)', () => {
    expect(discoverDaemon(world({}))).toEqual({ host: 'unix:///var/run/docker.sock', source: 'the default socket (none of the usual sockets exists)', tls: undefined });
  });

  describe('TLS with the meaning the docker CLI gives DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH', () => {
    const certs = { '/certs/ca.pem': 'CA', '/certs/cert.pem': 'CERT', '/certs/key.pem': 'KEY' };

    it('DOCKER_TLS_VERIFY=1: TLS, verified against DOCKER_CERT_PATH/ca.pem, with its client certificate', () => {
      expect(discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/certs' }, certs)).tls).toEqual({
        verify: true,
        ca: 'CA',
        cert: 'CERT',
        key: 'KEY',
        from: '/certs',
      });
    });

    it('DOCKER_TLS_VERIFY=0 still verifies: the CLI reads "set", not "true"', () => {
      expect(discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS_VERIFY: '0', DOCKER_CERT_PATH: '/certs' }, certs)).tls?.verify).toBe(true);
    });

    it('DOCKER_TLS alone: TLS without verification, the client certificate if there, no CA', () => {
      expect(discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS: '1', DOCKER_CERT_PATH: '/certs' }, certs)).tls).toEqual({
        verify: false,
        ca: undefined,
        cert: 'CERT',
        key: 'KEY',
        from: '/certs',
      });
    });

    it('without DOCKER_CERT_PATH the PEM files come from ~/.docker', () => {
      const home = { [`${HOME}/.docker/ca.pem`]: 'HCA', [`${HOME}/.docker/cert.pem`]: 'HC', [`${HOME}/.docker/key.pem`]: 'HK' };
      expect(discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS_VERIFY: '1' }, home)).tls).toMatchObject({ ca: 'HCA', cert: 'HC', from: `${HOME}/.docker` });
    });

    it('no TLS variable: a tcp:// host is plain HTTP, even on 2376 (as with the CLI)', () => {
      expect(discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_CERT_PATH: '/certs' }, certs)).tls).toBeUndefined();
    });

    it('bad input: verification asked for with no ca.pem, or a certificate without its key, each said in one line', () => {
      const noCa = failure(() => discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/empty' })));
      expect(noCa).toMatchObject({ code: 'BAD_INPUT', message: 'DOCKER_TLS_VERIFY is set but /empty/ca.pem is missing (DOCKER_CERT_PATH)' });
      const noKey = failure(() => discoverDaemon(world({ DOCKER_HOST: 'tcp://d:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/certs' }, { '/certs/ca.pem': 'CA', '/certs/cert.pem': 'C' })));
      expect(noKey).toMatchObject({ code: 'BAD_INPUT', message: '/certs/key.pem is missing beside its pair' });
    });
  });

  describe('bad input', () => {
    it('a context that does not exist names itself, where it came from, and what to run', () => {
      const error = failure(() => discoverDaemon(world({ DOCKER_CONTEXT: 'gone' })));
      expect(error.code).toBe('BAD_INPUT');
      expect(error.message).toBe(`Docker context "gone" (from DOCKER_CONTEXT) does not exist: no ${HOME}/.docker/contexts/meta/${contextId('gone')}/meta.json`);
      expect(error.hint).toContain('docker context ls');
    });

    it('a config.json that is not JSON, and a context with no docker endpoint', () => {
      expect(failure(() => discoverDaemon(world({}, { [`${HOME}/.docker/config.json`]: '{nope' }))).message).toMatch(/^\/home\/dev\/\.docker\/config\.json is not JSON/);
      const files = { [path.join(HOME, '.docker', 'contexts', 'meta', contextId('k8s'), 'meta.json')]: JSON.stringify({ Endpoints: { kubernetes: {} } }) };
      expect(failure(() => discoverDaemon(world({ DOCKER_CONTEXT: 'k8s' }, files))).message).toMatch(/^Docker context "k8s" has no docker endpoint host/);
    });
  });
});
