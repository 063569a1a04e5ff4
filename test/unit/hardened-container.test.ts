import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { DOCKER_20_VERSION, routeOf } from '../helpers/engine-api.js';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { EngineAdapter } from '../../src/docker/engine-adapter.js';
import type { DaemonInfo } from '../../src/docker/port.js';
import { containerSpec as specOf } from '../../src/docker/container-spec.js';
import { createHardenedContainer } from '../../src/docker/hardened-container.js';
import type { EngineInfo } from '../../src/backend/sandbox-backend.js';
import { GVISOR_MIN_PIDS, runtimeLimits, checkRuntime, identityMismatch, runnerCapEff } from '../../src/backend/sandbox-policy.js';

const spec = (runtime?: string) =>
  specOf({ name: 'asp-t-r', image: 'asp-sandbox:x', volume: 'asp-ws-t-r', labels: { 'asp.managed': 'true' }, limits: limitsSchema.parse({}), allowedEnv: {}, runtime });

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/**
 * A Docker-compatible engine on a unix socket that takes a create body, forgets the fields named in `drops` (as
 * Podman does with Runtime), and answers inspect with what it kept, in the Engine API's shape. It records calls.
 */
async function forgetfulEngine(drops: Array<'Runtime' | 'CapDrop' | 'SecurityOpt' | 'PidsLimit'>, extra: Record<string, unknown> = {}) {
  const socketPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-engine-')), 'engine.sock');
  const calls: string[] = [];
  let kept: { User?: string; HostConfig: Record<string, unknown> } | undefined;
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      const route = routeOf(request);
      response.setHeader('content-type', 'application/json');
      if (route === 'GET /version') {
        response.end(JSON.stringify(DOCKER_20_VERSION));
        return;
      }
      calls.push(route);
      if (route === 'POST /containers/create') {
        const created = JSON.parse(body) as { User: string; HostConfig: Record<string, unknown> };
        for (const field of drops) delete created.HostConfig[field];
        kept = { User: created.User, HostConfig: { ...created.HostConfig, Runtime: created.HostConfig.Runtime ?? 'runc', ...extra } };
        response.end(JSON.stringify({ Id: 'c0ffee' }));
      } else if (route === 'GET /containers/c0ffee/json') {
        response.end(JSON.stringify({ Id: 'c0ffee', Config: { User: kept?.User }, HostConfig: kept?.HostConfig }));
      } else if (route === 'DELETE /containers/c0ffee') {
        response.statusCode = 204;
        response.end();
      } else {
        response.statusCode = 404;
        response.end(JSON.stringify({ message: `no route ${route}` }));
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { docker: new EngineAdapter(`unix://${socketPath}`), calls };
}

async function refusal(promise: Promise<unknown>): Promise<AspError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AspError);
  return error as AspError;
}

describe('the sandbox is inspected after create, before it starts', () => {
  it('passes a container the engine made exactly as asked', async () => {
    const { docker, calls } = await forgetfulEngine([]);
    expect(await createHardenedContainer(docker, spec('runsc'))).toBe('c0ffee');
    expect(calls).toEqual(['POST /containers/create', 'GET /containers/c0ffee/json']);
  });

  it('refuses one whose engine dropped Runtime and CapDrop: exit 3, one line naming both, the container removed unstarted', async () => {
    const { docker, calls } = await forgetfulEngine(['Runtime', 'CapDrop']);
    const error = await refusal(createHardenedContainer(docker, spec('runsc')));
    expect(error.code).toBe('HARDENING_IGNORED');
    expect(exitCodeFor(error.code)).toBe(3);
    expect(error.message).toContain('Runtime "runsc" came back as "runc"');
    expect(error.message).toContain('CapDrop ALL is missing');
    expect(error.message).not.toContain('\n');
    expect(error.hint).toContain('--runtime');
    expect(calls).toEqual(['POST /containers/create', 'GET /containers/c0ffee/json', 'DELETE /containers/c0ffee']);
    expect(calls.some((call) => call.includes('/start'))).toBe(false);
  });

  it("refuses one that lost asp's seccomp profile or its pids limit, or gained a capability", async () => {
    const seccomp = await forgetfulEngine(['SecurityOpt']);
    expect((await refusal(createHardenedContainer(seccomp.docker, spec()))).message).toMatch(/SecurityOpt no-new-privileges is missing; SecurityOpt seccomp is missing/);
    const pids = await forgetfulEngine(['PidsLimit']);
    expect((await refusal(createHardenedContainer(pids.docker, spec()))).message).toContain('PidsLimit 512 came back as nothing');
    const caps = await forgetfulEngine([], { CapAdd: ['CAP_SETUID', 'CAP_SYS_ADMIN'] });
    expect((await refusal(createHardenedContainer(caps.docker, spec()))).message).toContain('CapAdd holds SYS_ADMIN, which asp did not ask for');
    const mounted = await forgetfulEngine([], { Binds: ['/:/host'], Init: false, Mounts: [{ Type: 'bind', Source: '/', Target: '/workspace' }] });
    const message = (await refusal(createHardenedContainer(mounted.docker, spec()))).message;
    expect(message).toContain('Init true came back as false');
    expect(message).toContain('Binds holds 1 host path(s), which asp did not ask for');
    expect(message).toContain('Mounts volume:/workspace came back as bind:/workspace');
  });
});

describe('the runtime asked for', () => {
  const info = (runtimeArgs: Record<string, string[]>): DaemonInfo => ({
    endpoint: 'unix:///fake',
    serverVersion: '20.10',
    apiVersion: '1.41',
    os: 'linux',
    arch: 'amd64',
    runtimes: Object.keys(runtimeArgs),
    runtimeArgs,
  });

  it('must be registered with the daemon', () => {
    expect(() => checkRuntime('runsc', info({ runc: [] }))).toThrow(/no runtime "runsc" \(it has: runc\)/);
  });

  it("must, for gVisor, load the container's seccomp profile (--oci-seccomp)", () => {
    expect(() => checkRuntime('runsc', info({ runc: [], runsc: ['--network=none'] }))).toThrow(/without --oci-seccomp/);
    expect(() => checkRuntime('runsc', info({ runc: [], runsc: ['--network=none', '--oci-seccomp'] }))).not.toThrow();
    expect(() => checkRuntime(undefined, info({ runc: [] }))).not.toThrow();
  });

  it('must, for gVisor, be registered with --network=none (without it every start fails and leaves runsc processes behind)', () => {
    expect(() => checkRuntime('runsc', info({ runc: [], runsc: ['--oci-seccomp'] }))).toThrow(
      expect.objectContaining({ code: 'RUNTIME_UNAVAILABLE', message: 'the runtime "runsc" is registered without --network=none, so gVisor cannot start a sandbox that has no network' }),
    );
  });
});

describe('runtimes on Podman', () => {
  it('refuses --runtime on Podman, which takes the field and runs its default runtime anyway', () => {
    const podman: EngineInfo = { endpoint: 'unix:///run/podman/podman.sock', product: 'podman', serverVersion: '4.3.1', apiVersion: '1.41', os: 'linux', arch: 'amd64', runtimes: ['runc', 'runsc'] };
    expect(() => checkRuntime('runsc', podman)).toThrow(
      expect.objectContaining({ code: 'RUNTIME_UNAVAILABLE', message: "Podman ignores the runtime a container asks for: --runtime runsc would run under Podman's default runtime" }),
    );
    expect(() => checkRuntime(undefined, podman)).not.toThrow();
  });
});

describe('limits under gVisor', () => {
  it(`raises a pids limit below ${GVISOR_MIN_PIDS} to it and says why; leaves other runtimes and higher limits alone`, () => {
    const raised = runtimeLimits('runsc', { pids: 64, memory: 1 });
    expect(raised.limits).toEqual({ pids: GVISOR_MIN_PIDS, memory: 1 });
    expect(raised.note).toMatch(/^--pids 64 raised to 512 under runsc: gVisor's own threads count against the limit/);
    expect(runtimeLimits('runsc', { pids: 2048 })).toEqual({ limits: { pids: 2048 } });
    expect(runtimeLimits(undefined, { pids: 64 })).toEqual({ limits: { pids: 64 } });
    expect(runtimeLimits('runc', { pids: 64 })).toEqual({ limits: { pids: 64 } });
  });
});

describe("the runner's identity, as its own kernel reports it in hello", () => {
  const right = { uid: 0, capEff: '00000000000000e4', seccomp: 2, noNewPrivs: 1 };

  it('is root with exactly SETUID, SETGID, KILL and DAC_READ_SEARCH (0xe4), under a seccomp filter, without new privileges', () => {
    expect(runnerCapEff()).toBe('00000000000000e4');
    expect(identityMismatch(right)).toBeUndefined();
    // gVisor's /proc/self/status has no NoNewPrivs line: absent is not wrong.
    expect(identityMismatch({ uid: 0, capEff: '00000000000000e4', seccomp: 2 })).toBeUndefined();
  });

  it('names each thing an engine did not apply', () => {
    expect(identityMismatch({ ...right, uid: 1000 })).toContain('runs as uid 1000, not 0');
    expect(identityMismatch({ ...right, capEff: '000001ffffffffff' })).toContain('holds capabilities 000001ffffffffff, not 00000000000000e4');
    expect(identityMismatch({ ...right, seccomp: 0 })).toContain('has no seccomp filter (mode 0)');
    expect(identityMismatch({ ...right, noNewPrivs: 0 })).toContain('lacks no-new-privileges');
    expect(identityMismatch(undefined)).toBe('the runner reported no identity');
  });
});
