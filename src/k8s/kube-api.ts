import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import type { KubeTarget } from './kube-config.js';

/** What a call is, for an error message that names the RBAC rule it needs ("create pods/attach"). */
export interface CallPurpose {
  verb: 'get' | 'list' | 'watch' | 'create' | 'delete';
  resource: string;
}

/** Longest error body read: a Status is small, a proxy's HTML page need not be. */
const MAX_ERROR_BYTES = 64 * 1024;
/** Longest JSON answer read (a PodList of hundreds of pods is a few MB). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** A Kubernetes `Status` as error bodies carry it. */
const statusSchema = z.object({ message: z.string().nullish(), reason: z.string().nullish() });
const watchEventSchema = z.object({ type: z.string(), object: z.unknown() });

/**
 * The few calls asp makes to the Kubernetes API, over node:http(s) with the kubeconfig's credentials: JSON requests
 * with a timeout, watches as streams of events, and the WebSocket upgrade of pods/attach (attach-stream.ts).
 * client-node's generated API classes are not used: asp needs bounded bodies, a timeout per call, errors that name
 * the missing RBAC verb, and backpressure on attach, which those do not give.
 */
export class KubeApi {
  constructor(
    readonly target: KubeTarget,
    private readonly timeoutMs: number,
  ) {}

  get server(): string {
    return this.target.server;
  }

  /** A JSON call; `undefined` for 404 when `allowMissing`. */
  async call<S extends z.ZodType>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    purpose: CallPurpose,
    schema: S,
    options: { body?: unknown; allowMissing?: boolean; query?: Record<string, string> } = {},
  ): Promise<z.infer<S> | undefined> {
    const response = await this.send(method, path, purpose, options.query, options.body);
    const text = await readBody(response, response.statusCode && response.statusCode < 300 ? MAX_BODY_BYTES : MAX_ERROR_BYTES, this.timeoutMs).catch((error: unknown) => {
      throw this.unreachable(error, purpose);
    });
    const status = response.statusCode ?? 0;
    if (status === 404 && options.allowMissing) return undefined;
    if (status >= 300) throw this.refused(status, text, purpose);
    const parsed = parseJsonWith(text, schema);
    if ('value' in parsed) return parsed.value;
    throw new AspError(
      'K8S_FAILED',
      `the Kubernetes API server answered ${method} ${path} with ${'notJson' in parsed ? 'something that is not JSON' : `JSON asp cannot read (${parsed.issues})`}`,
      'check that the kubeconfig points at an API server, not a proxy page',
    );
  }

  /**
   * Watches `path` (a collection, narrowed by `query`): each event goes to `onEvent` until it returns true (done),
   * the server ends the watch (resolves false: the caller watches again), or `signal` aborts.
   */
  async watch<S extends z.ZodType>(
    path: string,
    query: Record<string, string>,
    purpose: CallPurpose,
    schema: S,
    onEvent: (event: { type: string; object: z.infer<S> }) => boolean,
    signal?: AbortSignal,
    /** The client's own bound: a watch that a half-open connection would hold for ever ends (false) after it. */
    limitMs?: number,
  ): Promise<boolean> {
    if (signal?.aborted) return true;
    const response = await this.send('GET', path, purpose, { ...query, watch: 'true' }, undefined, { noTimeout: true, signal });
    if ((response.statusCode ?? 0) >= 300) throw this.refused(response.statusCode ?? 0, await readBody(response, MAX_ERROR_BYTES, this.timeoutMs).catch(() => ''), purpose);
    return new Promise<boolean>((resolve, reject) => {
      let held = '';
      let done = false;
      const finish = (value: boolean | Error) => {
        if (done) return;
        done = true;
        response.destroy();
        if (value instanceof Error) reject(value);
        else resolve(value);
      };
      signal?.addEventListener('abort', () => finish(true), { once: true });
      // Aborted while the request was on its way (an interrupt between the read and the watch): the listener never fires.
      if (signal?.aborted) finish(true);
      const limit = limitMs === undefined ? undefined : setTimeout(() => finish(false), limitMs);
      response.once('close', () => clearTimeout(limit));
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        held += chunk;
        let newline: number;
        while (!done && (newline = held.indexOf('\n')) >= 0) {
          const line = held.slice(0, newline).trim();
          held = held.slice(newline + 1);
          if (!line) continue;
          const event = parseJsonWith(line, watchEventSchema);
          if (!('value' in event)) {
            finish(new AspError('K8S_FAILED', `the Kubernetes API server sent a watch event asp cannot read on ${path}`));
            return;
          }
          // ERROR is 410 Gone (the resource version is too old): the caller reads again and watches from there.
          if (event.value.type === 'ERROR') {
            finish(false);
            return;
          }
          const object = schema.safeParse(event.value.object);
          if (!object.success) {
            finish(new AspError('K8S_FAILED', `the Kubernetes API server sent a watch event asp cannot read on ${path}`));
            return;
          }
          if (onEvent({ type: event.value.type, object: object.data })) finish(true);
        }
        if (held.length > MAX_ERROR_BYTES * 16) finish(new AspError('K8S_FAILED', `a watch event on ${path} is longer than ${MAX_ERROR_BYTES * 16} bytes`));
      });
      response.on('end', () => finish(false));
      response.on('error', (error) => (signal?.aborted ? finish(true) : finish(this.unreachable(error, purpose))));
    });
  }

  /** The URL and the request options (credentials, CA, agent) for a WebSocket upgrade to `path`. */
  async upgradeOptions(path: string, query: Record<string, string>): Promise<{ url: string; options: https.RequestOptions }> {
    const options: https.RequestOptions = { headers: {} };
    await this.target.authorize(options);
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return { url: url.toString(), options };
  }

  /** The error of an answer that is not a success: forbidden names its verb, the rest quote the server. */
  refused(status: number, text: string, purpose: CallPurpose): AspError {
    // Not a Status (a proxy's page): quote the start of it.
    const parsed = parseJsonWith(text, statusSchema);
    const said = oneLine(('value' in parsed ? parsed.value.message : undefined) ?? text) || `HTTP ${status}`;
    const rule = `${purpose.verb} ${purpose.resource}`;
    if (status === 401)
      return new AspError(
        'K8S_UNAVAILABLE',
        `the Kubernetes API server ${this.server} did not accept asp's credentials (401): ${said}`,
        'log in again or refresh the kubeconfig (kubectl auth whoami)',
      );
    if (status === 403) return forbidden(rule, said);
    if (status === 404 && /^namespaces? "[^"]*" not found/.test(said)) {
      return new AspError('BAD_INPUT', `the namespace does not exist on ${this.server}: ${said}`, 'create it (kubectl create namespace NAME) or pick another with --namespace');
    }
    return new AspError('K8S_FAILED', `the Kubernetes API server answered ${rule} with ${status}: ${said}`, status >= 500 ? 'the cluster is unwell: try again, or ask its operator' : undefined);
  }

  unreachable(error: unknown, purpose: CallPurpose): AspError {
    if (error instanceof AspError) return error;
    const code = systemErrorCode(error);
    const why = code === 'ETIMEDOUT' ? `no answer within ${Math.round(this.timeoutMs / 1000)} s` : (code ?? errorMessage(error));
    return new AspError(
      'K8S_UNAVAILABLE',
      `the Kubernetes API server ${this.server} does not answer (${why}) to ${purpose.verb} ${purpose.resource} (${this.target.source})`,
      'check that the cluster is up and the kubeconfig points at it (kubectl cluster-info); ASP_DOCKER_TIMEOUT also bounds Kubernetes calls',
    );
  }

  private async send(
    method: string,
    path: string,
    purpose: CallPurpose,
    query: Record<string, string> | undefined,
    body: unknown,
    options: { noTimeout?: boolean; signal?: AbortSignal | undefined } = {},
  ): Promise<IncomingMessage> {
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, value);
    const request: https.RequestOptions = { method, headers: { Accept: 'application/json' } };
    await this.target.authorize(request);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) Object.assign(request.headers ?? {}, { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) });
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = transport.request(url, request, resolve);
      const fail = (error: unknown) => reject(this.unreachable(error, purpose));
      outgoing.on('error', fail);
      if (!options.noTimeout) outgoing.setTimeout(this.timeoutMs, () => outgoing.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      options.signal?.addEventListener('abort', () => outgoing.destroy(), { once: true });
      if (options.signal?.aborted) outgoing.destroy();
      outgoing.end(payload);
    });
  }
}

function readBody(response: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const timer = setTimeout(() => response.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    response.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= limit) chunks.push(chunk);
    });
    response.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    response.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * A 403 is RBAC only when the message says so ("cannot create resource"); admission says 403 too: Pod Security
 * (asp's runner holds DAC_READ_SEARCH, which only the privileged level allows), a ResourceQuota, a RuntimeClass.
 */
function forbidden(rule: string, said: string): AspError {
  const message = `the Kubernetes API server refused to let asp ${rule} (403): ${said}`;
  if (/RuntimeClass "[^"]*" not found/.test(said)) return new AspError('RUNTIME_UNAVAILABLE', message, 'name a RuntimeClass the cluster has (kubectl get runtimeclass), or drop --runtime');
  if (/violates PodSecurity/.test(said)) {
    return new AspError(
      'K8S_FORBIDDEN',
      message,
      "asp's pods need the namespace's Pod Security level to be privileged (the runner holds SETUID, SETGID, KILL, DAC_READ_SEARCH and runs as root): kubectl label namespace NS pod-security.kubernetes.io/enforce=privileged",
    );
  }
  if (/exceeded quota/.test(said)) return new AspError('K8S_FORBIDDEN', message, "the namespace's ResourceQuota is used up: lower --cpus/--memory/--disk, run fewer at once, or raise the quota");
  if (/cannot [a-z]+ resource/.test(said)) return new AspError('K8S_FORBIDDEN', message, `grant "${rule}" in the namespace (examples/k8s/rbac.yaml has every verb asp needs)`);
  return new AspError('K8S_FORBIDDEN', message, "an admission policy of the cluster refused it: kubectl describe the namespace's policies");
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 400);
}
