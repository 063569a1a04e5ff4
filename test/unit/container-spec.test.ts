import { describe, expect, it } from 'vitest';
import { limitsSchema } from '../../src/config/task-spec.js';
import { containerSpec } from '../../src/docker/container-spec.js';
import { RUNNER_CAPABILITIES, sandboxEnv } from '../../src/backend/sandbox-policy.js';
import { DENIED_SYSCALLS, seccompProfile, seccompSecurityOpt } from '../../src/backend/seccomp-profile.js';

const limits = limitsSchema.parse({ memory: '1g', cpus: 1.5, pids: 256, timeout: '5m' });
const spec = containerSpec({
  name: 'asp-t1-r1',
  image: 'asp-sandbox:abc',
  volume: 'asp-ws-t1',
  labels: { 'asp.managed': 'true' },
  limits,
  allowedEnv: { FOO: 'bar', PATH: '/evil' },
});

describe('container spec', () => {
  it('has no network at all', () => {
    expect(spec.HostConfig.NetworkMode).toBe('none');
    expect(spec.NetworkDisabled).toBe(true);
  });

  it('runs read-only with an exec-able, nosuid, sized tmpfs /tmp', () => {
    expect(spec.HostConfig.ReadonlyRootfs).toBe(true);
    expect(spec.HostConfig.Tmpfs).toEqual({ '/tmp': `rw,exec,nosuid,nodev,size=${512 * 1024 ** 2}` });
  });

  it("drops every capability but the runner's four, each with its reason, forbids new privileges and applies asp's seccomp profile", () => {
    expect(spec.HostConfig.CapDrop).toEqual(['ALL']);
    // The minimum to start steps as uid 1000 (SETUID, SETGID), end all their processes (KILL), and let the disk
    // watchdog see directories a step hid (DAC_READ_SEARCH). Nothing else: no CHOWN, DAC_OVERRIDE, FOWNER, NET_RAW, ...
    expect(spec.HostConfig.CapAdd).toEqual(['SETUID', 'SETGID', 'KILL', 'DAC_READ_SEARCH']);
    for (const entry of RUNNER_CAPABILITIES) expect(entry.reason.length, entry.cap).toBeGreaterThan(30);
    expect(spec.HostConfig.SecurityOpt).toEqual(['no-new-privileges', seccompSecurityOpt()]);
    expect(spec.HostConfig.Privileged).toBe(false);
  });

  it('starts the runner as root of the container (never uid 1000, which steps use) under init', () => {
    expect(spec.User).toBe('0:0');
    expect(spec.HostConfig.Init).toBe(true);
  });

  it('applies pids, memory (without swap) and cpu limits', () => {
    expect(spec.HostConfig.PidsLimit).toBe(256);
    expect(spec.HostConfig.Memory).toBe(1024 ** 3);
    expect(spec.HostConfig.MemorySwap).toBe(1024 ** 3);
    expect(spec.HostConfig.NanoCpus).toBe(1_500_000_000);
  });

  it('caps the container log', () => {
    expect(spec.HostConfig.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } });
  });

  it('mounts only the named volume: no binds, no devices, no Docker socket', () => {
    expect(spec.HostConfig.Mounts).toEqual([{ Type: 'volume', Source: 'asp-ws-t1', Target: '/workspace', ReadOnly: false }]);
    expect(spec.HostConfig.Binds).toEqual([]);
    expect(spec.HostConfig.Devices).toEqual([]);
    expect(JSON.stringify(spec)).not.toContain('docker.sock');
  });

  it('has no TTY, so the protocol stays clean, and a stdin pipe that closes when the host detaches', () => {
    expect(spec.Tty).toBe(false);
    expect([spec.OpenStdin, spec.AttachStdin, spec.StdinOnce]).toEqual([true, true, true]);
    expect(spec.AttachStdout).toBe(true);
  });

  it('carries the labels and runs the sandbox runner', () => {
    expect(spec.Labels).toEqual({ 'asp.managed': 'true' });
    expect(spec.Cmd).toEqual(['node', '/opt/asp/sandbox/asp-sandbox.cjs']);
  });

  it('sets no runtime unless asked, and the one asked for', () => {
    expect(spec.HostConfig.Runtime).toBeUndefined();
    const gvisor = containerSpec({ name: 'n', image: 'i', volume: 'v', labels: {}, limits, allowedEnv: {}, runtime: 'runsc' });
    expect(gvisor.HostConfig.Runtime).toBe('runsc');
  });
});

describe("container spec of an image that is not asp's own", () => {
  const injected = containerSpec({ name: 'asp-t2-r2', image: 'python:3.12-slim', volume: 'asp-ws-t2', labels: {}, limits, allowedEnv: {}, runnerRuntime: 'asp-runtime-abc' });

  it('mounts the runtime read-only at /opt/asp, never filled from the task image', () => {
    expect(injected.HostConfig.Mounts).toEqual([
      { Type: 'volume', Source: 'asp-ws-t2', Target: '/workspace', ReadOnly: false },
      { Type: 'volume', Source: 'asp-runtime-abc', Target: '/opt/asp', ReadOnly: true, VolumeOptions: { NoCopy: true } },
    ]);
    expect(injected.HostConfig.Binds).toEqual([]);
  });

  it("starts the runner from the runtime through the runtime's own loader, whatever the image's ENTRYPOINT and CMD", () => {
    expect(injected.Entrypoint).toEqual(['/opt/asp/lib/ld.so', '--library-path', '/opt/asp/lib', '/opt/asp/bin/node']);
    expect(injected.Cmd).toEqual(['/opt/asp/sandbox/asp-sandbox.cjs']);
    // asp's own image runs its own runner, with no Entrypoint of asp's.
    expect(spec.Entrypoint).toBeUndefined();
    expect(spec.Cmd).toEqual(['node', '/opt/asp/sandbox/asp-sandbox.cjs']);
  });

  it("overrides the image's USER and WORKDIR, empties what would change the runner, and keeps every other hardening field", () => {
    expect(injected.User).toBe('0:0');
    expect(injected.WorkingDir).toBe('/workspace');
    expect(injected.Env).toEqual(expect.arrayContaining(['ASP_RUNTIME=/opt/asp', 'LD_PRELOAD=', 'LD_AUDIT=', 'NODE_OPTIONS=']));
    expect(injected.Env.some((entry) => entry.startsWith('LD_LIBRARY_PATH='))).toBe(false);
    const { Mounts: _mounts, ...hardening } = injected.HostConfig;
    const { Mounts: _own, ...ownHardening } = spec.HostConfig;
    expect(hardening).toEqual(ownHardening);
  });
});

describe('seccomp profile', () => {
  const profile = seccompProfile();
  const allowed = (name: string) => profile.syscalls.filter((rule) => rule.action === 'SCMP_ACT_ALLOW' && rule.names.includes(name));

  it('refuses by default with EPERM, and io_uring with ENOSYS so libraries fall back', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(profile.defaultErrnoRet).toBe(1);
    for (const name of ['io_uring_setup', 'io_uring_enter', 'io_uring_register']) {
      expect(allowed(name), name).toEqual([]);
      expect(profile.syscalls).toContainEqual({ names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
    }
  });

  it("names a reason for every syscall it refuses beyond Docker's default", () => {
    for (const rule of DENIED_SYSCALLS) {
      expect(rule.reason.length).toBeGreaterThan(20);
      for (const name of rule.names) expect(allowed(name), name).toEqual([]);
    }
  });

  it('keeps what test suites use, and no capability-gated syscall (open_by_handle_at, mount, bpf, ...)', () => {
    for (const name of ['read', 'write', 'openat', 'clone', 'execve', 'wait4', 'setuid', 'setgid', 'setgroups', 'kill', 'ptrace', 'socket', 'epoll_wait', 'futex']) {
      expect(allowed(name).length, name).toBeGreaterThan(0);
    }
    for (const name of ['open_by_handle_at', 'mount', 'umount2', 'bpf', 'unshare', 'setns', 'keyctl', 'add_key', 'userfaultfd', 'perf_event_open', 'kexec_load', 'init_module']) {
      expect(allowed(name), name).toEqual([]);
    }
    expect(profile.syscalls.some((rule) => 'includes' in rule && rule.includes && 'caps' in rule.includes)).toBe(false);
  });

  it('lets clone make threads and processes but no namespaces, and clone3 answers ENOSYS', () => {
    expect(allowed('clone')).toContainEqual(expect.objectContaining({ args: [{ index: 0, value: 0x7e020000, op: 'SCMP_CMP_MASKED_EQ' }] }));
    expect(profile.syscalls).toContainEqual({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  });

  it('is passed inline, as the Engine API takes it', () => {
    expect(seccompSecurityOpt().startsWith('seccomp={')).toBe(true);
    expect(JSON.parse(seccompSecurityOpt().slice('seccomp='.length))).toEqual(profile);
  });
});

describe('sandbox environment', () => {
  it('lets in only the allowlist, and the allowlist cannot override the fixed values', () => {
    const env = sandboxEnv({ FOO: 'bar', PATH: '/evil', HOME: '/root' });
    expect(env).toContain('FOO=bar');
    expect(env).toContain('HOME=/tmp');
    expect(env).not.toContain('PATH=/evil');
    expect(env.filter((entry) => entry.startsWith('PATH='))).toHaveLength(1);
  });

  it('does not leak the host environment', () => {
    const env = sandboxEnv({});
    const names = env.map((entry) => entry.split('=')[0]);
    expect(names.sort()).toEqual(['CI', 'HOME', 'LANG', 'PATH', 'SHELL', 'TERM']);
    expect(spec.Env).toContain('FOO=bar');
    expect(spec.Env.some((entry) => entry.startsWith('LANGFUSE') || entry.startsWith('AWS') || entry.startsWith('GITHUB'))).toBe(false);
  });
});
