import { describe, expect, it } from 'vitest';
import { limitsSchema } from '../../src/config/task-spec.js';
import { containerSpec, sandboxEnv } from '../../src/supervisor/container-spec.js';

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

  it('drops every capability and forbids new privileges', () => {
    expect(spec.HostConfig.CapDrop).toEqual(['ALL']);
    expect(spec.HostConfig.CapAdd).toEqual([]);
    expect(spec.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
    expect(spec.HostConfig.Privileged).toBe(false);
  });

  it('runs as uid 1000 under init', () => {
    expect(spec.User).toBe('1000:1000');
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
    expect(spec.Cmd).toEqual(['asp-sandbox']);
  });

  it('sets no runtime unless asked, and the one asked for', () => {
    expect(spec.HostConfig.Runtime).toBeUndefined();
    const gvisor = containerSpec({ name: 'n', image: 'i', volume: 'v', labels: {}, limits, allowedEnv: {}, runtime: 'runsc' });
    expect(gvisor.HostConfig.Runtime).toBe('runsc');
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
