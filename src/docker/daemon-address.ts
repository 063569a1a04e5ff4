import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { isRecord, valueAt } from '../core/record-guard.js';

/**
 * Which daemon asp talks to, found as the docker CLI finds it: DOCKER_HOST (with DOCKER_TLS_VERIFY, DOCKER_TLS and
 * DOCKER_CERT_PATH), else the current context (DOCKER_CONTEXT, else `currentContext` of the CLI's config.json, its
 * endpoint and TLS material under contexts/), else the first of the usual sockets that exists (rootful, rootless,
 * Docker Desktop, Colima, Podman rootful and rootless). `source` says which and why, for `asp doctor`.
 */
export interface DaemonAddress {
  /** As DOCKER_HOST would say it: unix:///path, tcp://host:port, ssh://[user@]host[:port]. */
  host: string;
  /** Why this one: "DOCKER_HOST", `context "ci" (DOCKER_CONTEXT)`, "the rootless Docker socket", ... */
  source: string;
  /** TLS for a tcp:// host; undefined: plain HTTP (or a socket). */
  tls: TlsMaterial | undefined;
}

export interface TlsMaterial {
  /** Check the daemon's certificate against `ca` (DOCKER_TLS_VERIFY, or a context without SkipTLSVerify). */
  verify: boolean;
  ca: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  /** Where the PEM files came from, for messages. */
  from: string;
}

/** What discovery may look at: the environment and files, so that tests give it a made-up home. */
export interface DiscoveryWorld {
  env: NodeJS.ProcessEnv;
  home: string;
  uid: number | undefined;
  readFile(file: string): string | undefined;
  isSocket(file: string): boolean;
}

export function realWorld(env: NodeJS.ProcessEnv): DiscoveryWorld {
  return {
    env,
    home: env.HOME || os.homedir(),
    uid: process.getuid?.(),
    readFile: (file) => {
      try {
        return readFileSync(file, 'utf8');
      } catch (error) {
        if (systemErrorCode(error) === 'ENOENT' || systemErrorCode(error) === 'ENOTDIR') return undefined;
        throw new AspError('BAD_INPUT', `cannot read ${file}: ${errorMessage(error)}`, 'fix its permissions, or set DOCKER_HOST', { cause: error });
      }
    },
    isSocket: (file) => {
      try {
        return statSync(file).isSocket();
      } catch {
        return false;
      }
    },
  };
}

export const DEFAULT_SOCKET = '/var/run/docker.sock';

export function discoverDaemon(world: DiscoveryWorld): DaemonAddress {
  const { env } = world;
  const configDir = env.DOCKER_CONFIG || path.join(world.home, '.docker');
  if (env.DOCKER_HOST) {
    const host = env.DOCKER_HOST;
    return { host, source: 'DOCKER_HOST', tls: tlsFromEnvironment(world, configDir, host) };
  }
  const context = currentContext(world, configDir);
  if (context && context.name !== 'default') return contextAddress(world, configDir, context.name, context.why);
  const found = wellKnownSockets(world).find((candidate) => world.isSocket(candidate.path));
  if (found) return { host: `unix://${found.path}`, source: found.what, tls: undefined };
  return { host: `unix://${DEFAULT_SOCKET}`, source: 'the default socket (none of the usual sockets exists)', tls: undefined };
}

/**
 * The docker CLI's rule (cli/flags): DOCKER_TLS_VERIFY set to anything non-empty means TLS and verification; DOCKER_TLS
 * non-empty means TLS; an https:// host means TLS with verification. The PEM files are DOCKER_CERT_PATH's, else the
 * config dir's: ca.pem (required to verify), cert.pem and key.pem (used when both are there).
 */
function tlsFromEnvironment(world: DiscoveryWorld, configDir: string, host: string): TlsMaterial | undefined {
  const { env } = world;
  const verify = Boolean(env.DOCKER_TLS_VERIFY) || host.startsWith('https://');
  const enabled = verify || Boolean(env.DOCKER_TLS);
  if (!enabled || host.startsWith('unix://') || host.startsWith('ssh://')) return undefined;
  const dir = env.DOCKER_CERT_PATH || configDir;
  const named = env.DOCKER_CERT_PATH ? 'DOCKER_CERT_PATH' : 'the Docker config dir';
  const material = pemFiles(world, dir, verify);
  if (verify && !material.ca && (env.DOCKER_TLS_VERIFY || env.DOCKER_CERT_PATH)) {
    throw new AspError('BAD_INPUT', `DOCKER_TLS_VERIFY is set but ${path.join(dir, 'ca.pem')} is missing (${named})`, 'set DOCKER_CERT_PATH to the directory that holds ca.pem, cert.pem and key.pem');
  }
  return { verify, ...material, from: dir };
}

function pemFiles(world: DiscoveryWorld, dir: string, verify: boolean): Pick<TlsMaterial, 'ca' | 'cert' | 'key'> {
  const cert = world.readFile(path.join(dir, 'cert.pem'));
  const key = world.readFile(path.join(dir, 'key.pem'));
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? 'cert.pem' : 'key.pem';
    throw new AspError('BAD_INPUT', `${path.join(dir, missing)} is missing beside its pair`, 'a client certificate needs both cert.pem and key.pem');
  }
  // Without verification the CA is not used, as with the docker CLI.
  return { ca: verify ? world.readFile(path.join(dir, 'ca.pem')) : undefined, cert, key };
}

function currentContext(world: DiscoveryWorld, configDir: string): { name: string; why: string } | undefined {
  if (world.env.DOCKER_CONTEXT) return { name: world.env.DOCKER_CONTEXT, why: 'DOCKER_CONTEXT' };
  const file = path.join(configDir, 'config.json');
  const text = world.readFile(file);
  if (text === undefined) return undefined;
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new AspError('BAD_INPUT', `${file} is not JSON (${errorMessage(error)})`, 'fix it, or set DOCKER_HOST to name the daemon');
  }
  const name = valueAt(config, 'currentContext');
  return typeof name === 'string' && name ? { name, why: file } : undefined;
}

/** A context's endpoint from contexts/meta/<sha256 of its name>/meta.json, and its TLS files from contexts/tls/<same>/docker/. */
function contextAddress(world: DiscoveryWorld, configDir: string, name: string, why: string): DaemonAddress {
  const id = createHash('sha256').update(name).digest('hex');
  const metaFile = path.join(configDir, 'contexts', 'meta', id, 'meta.json');
  const text = world.readFile(metaFile);
  if (text === undefined) {
    throw new AspError('BAD_INPUT', `Docker context "${name}" (from ${why}) does not exist: no ${metaFile}`, '`docker context ls` lists the contexts; or set DOCKER_HOST');
  }
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (error) {
    throw new AspError('BAD_INPUT', `Docker context "${name}": ${metaFile} is not JSON (${errorMessage(error)})`, 'recreate it with `docker context create`, or set DOCKER_HOST');
  }
  const endpoint = valueAt(valueAt(meta, 'Endpoints'), 'docker');
  const host = valueAt(endpoint, 'Host');
  if (!isRecord(endpoint) || typeof host !== 'string' || !host) {
    throw new AspError('BAD_INPUT', `Docker context "${name}" has no docker endpoint host in ${metaFile}`, 'recreate it with `docker context create --docker host=...`, or set DOCKER_HOST');
  }
  const tlsDir = path.join(configDir, 'contexts', 'tls', id, 'docker');
  const skipVerify = valueAt(endpoint, 'SkipTLSVerify') === true;
  const ca = world.readFile(path.join(tlsDir, 'ca.pem'));
  const cert = world.readFile(path.join(tlsDir, 'cert.pem'));
  const key = world.readFile(path.join(tlsDir, 'key.pem'));
  const hasMaterial = ca !== undefined || cert !== undefined;
  const tls =
    host.startsWith('tcp://') || host.startsWith('https://')
      ? hasMaterial || skipVerify || host.startsWith('https://')
        ? { verify: !skipVerify, ca, cert, key, from: tlsDir }
        : undefined
      : undefined;
  return { host, source: `context "${name}" (${why})`, tls };
}

/** The sockets the usual installs listen on, in the order asp tries them. */
export function wellKnownSockets(world: DiscoveryWorld): Array<{ path: string; what: string }> {
  const runtimeDir = world.env.XDG_RUNTIME_DIR || (world.uid !== undefined ? `/run/user/${world.uid}` : undefined);
  return [
    { path: DEFAULT_SOCKET, what: 'the Docker socket' },
    ...(runtimeDir ? [{ path: path.join(runtimeDir, 'docker.sock'), what: 'the rootless Docker socket ($XDG_RUNTIME_DIR/docker.sock)' }] : []),
    { path: path.join(world.home, '.docker', 'run', 'docker.sock'), what: "Docker Desktop's socket (~/.docker/run/docker.sock)" },
    { path: path.join(world.home, '.docker', 'desktop', 'docker.sock'), what: "Docker Desktop's socket (~/.docker/desktop/docker.sock)" },
    { path: path.join(world.home, '.colima', 'default', 'docker.sock'), what: "Colima's socket (~/.colima/default/docker.sock)" },
    { path: path.join(world.home, '.colima', 'docker.sock'), what: "Colima's socket (~/.colima/docker.sock)" },
    { path: '/run/podman/podman.sock', what: "Podman's socket (/run/podman/podman.sock)" },
    ...(runtimeDir ? [{ path: path.join(runtimeDir, 'podman', 'podman.sock'), what: "rootless Podman's socket ($XDG_RUNTIME_DIR/podman/podman.sock)" }] : []),
  ];
}
