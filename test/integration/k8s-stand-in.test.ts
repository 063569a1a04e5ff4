import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerAvailable } from '../helpers/docker.js';
import { startKubeStandIn, type KubeStandIn } from '../helpers/k8s-stand-in.js';
import { PlainClient, type Refused } from '../helpers/k8s-stand-in/plain-client.js';

/**
 * The Kubernetes API stand-in (test/helpers/k8s-stand-in.ts), spoken to directly: plain HTTP and `ws`, no asp. It
 * must answer as kube-apiserver does (Status objects, watch events, the channel protocol of attach) and run each pod
 * as real Docker containers with the pod's fields mapped, leaving nothing behind.
 */
const NODE = 'node:20-bookworm-slim';
const run = Date.now().toString(36);
const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).trim();

/** A pod of one container; `container` and `spec` override its fields. */
function pod(name: string, container: Record<string, unknown>, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { run, ...labels } },
    spec: { restartPolicy: 'Never', automountServiceAccountToken: false, containers: [{ name: 'main', image: NODE, ...container }], ...spec },
  };
}

describe.skipIf(!dockerAvailable)('the Kubernetes API stand-in', () => {
  let k8s: KubeStandIn;
  let client: PlainClient;
  let seccompRoot: string;
  const pods = '/api/v1/namespaces/asp/pods';
  let counter = 0;
  const fresh = (what: string) => `${what}-${run}-${(counter += 1)}`;

  const create = async (manifest: object) => {
    const answer = await client.call('POST', pods, manifest);
    expect(answer.status, JSON.stringify(answer.json)).toBe(201);
    return answer.json;
  };
  const get = async (name: string) => (await client.call('GET', `${pods}/${name}`)).json;
  /** Polls the pod until `ready` holds of it. */
  const until = async (name: string, ready: (object: any) => boolean, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const object = await get(name);
      if (ready(object)) return object;
      if (Date.now() > deadline) throw new Error(`pod ${name} did not get there within ${timeoutMs} ms: ${JSON.stringify(object.status)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const running = (name: string) => until(name, (object) => object.status?.containerStatuses?.every((status: any) => status.state.running));
  const phase = (name: string, wanted: string, timeoutMs?: number) => until(name, (object) => object.status?.phase === wanted, timeoutMs);
  const remove = (name: string) => client.call('DELETE', `${pods}/${name}?gracePeriodSeconds=0`);
  const attach = async (name: string, protocols = ['v5.channel.k8s.io'], query = 'stdin=true&stdout=true&stderr=true') => {
    const attached = await client.attach(`${pods}/${name}/attach?container=main&${query}`, protocols);
    if ('refused' in attached) throw new Error(`attach refused: ${JSON.stringify(attached.json)}`);
    return attached;
  };
  const refused = async (name: string, protocols = ['v5.channel.k8s.io'], on = client) => {
    const answer = await on.attach(`${pods}/${name}/attach?container=main&stdin=true&stdout=true`, protocols);
    if (!('refused' in answer)) throw new Error('attach was accepted');
    return answer;
  };

  beforeAll(async () => {
    seccompRoot = mkdtempSync(path.join(os.tmpdir(), 'asp-seccomp-root-'));
    // A profile that allows everything but mkdir: its effect is visible from inside.
    writeFileSync(path.join(seccompRoot, 'no-mkdir.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] }));
    k8s = await startKubeStandIn({ extraNamespaces: ['other'], seccompRoot, podPidsLimit: 321, runtimeClasses: [{ name: 'gvisor', handler: 'runsc' }] });
    client = new PlainClient(k8s.url, k8s.token);
  });

  afterAll(async () => {
    await k8s?.close();
    // Nothing the stand-ins made is left on the daemon (this suite's: its pods carry the run's label, and another
    // suite may be running a stand-in of its own on the same daemon).
    expect(docker('ps', '-a', '-q', '--filter', 'label=asp.stand-in', '--filter', `label=run=${run}`)).toBe('');
    expect(docker('volume', 'ls', '-q', '--filter', 'label=asp.stand-in', '--filter', `label=run=${run}`)).toBe('');
  });

  describe('the API surface', () => {
    it('answers only the bearer token it gave out: 401 Unauthorized otherwise', async () => {
      for (const token of [null, 'wrong']) {
        const answer = await client.call('GET', '/version', undefined, token);
        expect(answer).toEqual({ status: 401, json: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 } });
      }
    });

    it('says its version, and that a path it does not serve is not found', async () => {
      expect(await client.call('GET', '/version')).toEqual({ status: 200, json: { major: '1', minor: '31', gitVersion: 'v1.31.0-asp-stand-in', platform: 'linux/amd64' } });
      const unknown = await client.call('GET', '/api/v1/namespaces/asp/configmaps');
      expect(unknown.status).toBe(404);
      expect(unknown.json).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404 });
    });

    it('serves its namespaces, and a namespace that does not exist is 404 for every namespaced call', async () => {
      expect((await client.call('GET', '/api/v1/namespaces/asp')).json).toMatchObject({ kind: 'Namespace', metadata: { name: 'asp' }, status: { phase: 'Active' } });
      expect((await client.call('GET', '/api/v1/namespaces/other')).status).toBe(200);
      const missing = {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'namespaces "nowhere" not found',
        reason: 'NotFound',
        details: { name: 'nowhere', kind: 'namespaces' },
        code: 404,
      };
      for (const [method, where] of [
        ['GET', '/api/v1/namespaces/nowhere'],
        ['GET', '/api/v1/namespaces/nowhere/pods'],
        ['GET', '/api/v1/namespaces/nowhere/pods/x'],
        ['GET', '/apis/networking.k8s.io/v1/namespaces/nowhere/networkpolicies'],
      ] as const) {
        expect(await client.call(method, where)).toEqual({ status: 404, json: missing });
      }
      expect(await client.call('POST', '/api/v1/namespaces/nowhere/pods', pod('x', {}))).toEqual({ status: 404, json: missing });
    });

    it('writes a kubeconfig whose current context is the stand-in, with the token and the namespace', () => {
      const text = execFileSync('cat', [k8s.kubeconfigPath], { encoding: 'utf8' });
      expect(text).toContain(`server: ${k8s.url}`);
      expect(text).toContain('insecure-skip-tls-verify: true');
      expect(text).toContain(`token: ${k8s.token}`);
      expect(text).toContain('namespace: asp');
      expect(text).toMatch(/^current-context: asp-stand-in$/m);
    });

    it('lists its RuntimeClasses, and refuses a pod of one it does not have as the RuntimeClass admission does', async () => {
      const list = await client.call('GET', '/apis/node.k8s.io/v1/runtimeclasses');
      expect(list.json).toMatchObject({ kind: 'RuntimeClassList', apiVersion: 'node.k8s.io/v1', items: [{ metadata: { name: 'gvisor' }, handler: 'runsc' }] });
      const answer = await client.call('POST', pods, pod('no-class', {}, { runtimeClassName: 'kata' }));
      expect(answer).toEqual({
        status: 403,
        json: expect.objectContaining({ reason: 'Forbidden', code: 403, message: 'pods "no-class" is forbidden: pod rejected: RuntimeClass "kata" not found' }),
      });
    });
  });

  describe('creating pods', () => {
    it('refuses a pod the schemas or the validation reject with 422 Invalid, naming each field', async () => {
      const noName = pod('bad', {});
      delete (noName.spec.containers[0] as Record<string, unknown>).name;
      const answer = await client.call('POST', pods, noName);
      expect(answer.status).toBe(422);
      expect(answer.json).toMatchObject({
        kind: 'Status',
        status: 'Failure',
        reason: 'Invalid',
        code: 422,
        message: 'Pod "bad" is invalid: spec.containers[0].name: Required value',
        details: { name: 'bad', kind: 'Pod', causes: [{ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.containers[0].name' }] },
      });
      const noImage = await client.call('POST', pods, pod('bad', { image: undefined }));
      expect(noImage.json.message).toBe('Pod "bad" is invalid: spec.containers[0].image: Required value');
      const several = await client.call('POST', pods, pod('Bad_Name', { name: 'main', stdin: 'yes' }));
      expect(several.status).toBe(422);
      expect(several.json.message).toMatch(/^Pod "Bad_Name" is invalid: spec.containers\[0\].stdin: Invalid value: "yes": must be boolean$/);
      const labels = await client.call('POST', pods, pod('bad-labels', {}, {}, { 'asp.supervisor': 'host/1/2' }));
      expect(labels.json.message).toMatch(/^Pod "bad-labels" is invalid: metadata.labels: Invalid value: "host\/1\/2": a valid label must be an empty string/);
    });

    it("refuses what the stand-in will not run (restartPolicy other than Never, the host's namespaces, privileged), saying it is its policy", async () => {
      const always = await client.call('POST', pods, pod('always', {}, { restartPolicy: undefined }));
      expect(always.json.message).toBe(
        'Pod "always" is invalid: spec.restartPolicy: Unsupported value: "Always": supported values: "Never" (the stand-in runs a pod\'s containers once: a sandbox is never restarted)',
      );
      const host = await client.call('POST', pods, pod('host', { securityContext: { privileged: true } }, { hostNetwork: true, hostPID: true }));
      expect(host.status).toBe(422);
      expect(host.json.details.causes.map((entry: { field: string }) => entry.field)).toEqual(['spec.containers[0].securityContext.privileged', 'spec.hostNetwork', 'spec.hostPID']);
      const unconfined = await client.call('POST', pods, pod('unconfined', { securityContext: { seccompProfile: { type: 'Unconfined' } } }));
      expect(unconfined.json.message).toMatch(/seccompProfile.type: Forbidden: the stand-in runs no container with seccomp Unconfined/);
    });

    it('gives a pod its identity and defaults, answers 201, and 409 for a second of the same name', async () => {
      const name = fresh('identity');
      const created = await create(pod(name, { command: ['sleep', '30'] }));
      expect(created).toMatchObject({
        kind: 'Pod',
        metadata: { name, namespace: 'asp', uid: expect.stringMatching(/^[0-9a-f-]{36}$/), resourceVersion: expect.stringMatching(/^\d+$/), creationTimestamp: expect.any(String) },
        spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 30, containers: [{ terminationMessagePolicy: 'File', imagePullPolicy: 'IfNotPresent' }] },
        status: { phase: 'Pending', qosClass: 'BestEffort' },
      });
      const again = await client.call('POST', pods, pod(name, {}));
      expect(again).toEqual({
        status: 409,
        json: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `pods "${name}" already exists`, reason: 'AlreadyExists', details: { name, kind: 'pods' }, code: 409 },
      });
      await remove(name);
    });
  });

  describe('attach', () => {
    const echo = { command: ['node', '-e', 'process.stdin.pipe(process.stdout)'], stdin: true, stdinOnce: true };

    it('v5: stdin reaches the container, its stdout comes back, [255, 0] ends stdin, then the status and the close', async () => {
      const name = fresh('echo5');
      await create(pod(name, echo));
      await running(name);
      const session = await attach(name);
      expect(session.protocol).toBe('v5.channel.k8s.io');
      session.send(0, 'hello\n');
      expect((await session.until(1, 6)).toString()).toBe('hello\n');
      session.send(255, Buffer.from([0]));
      await session.closed;
      expect(session.status()).toEqual({ metadata: {}, status: 'Success' });
      expect(session.messages.at(-1)?.[0]).toBe(3);
      const done = await phase(name, 'Succeeded');
      expect(done.status.containerStatuses[0]).toMatchObject({ name: 'main', ready: false, started: false, state: { terminated: { exitCode: 0, reason: 'Completed' } } });
      await remove(name);
    });

    it('v4: a client that closes its socket closes stdin (stdinOnce), and the container ends', async () => {
      const name = fresh('echo4');
      await create(pod(name, echo));
      await running(name);
      const session = await attach(name, ['v4.channel.k8s.io', 'v3.channel.k8s.io']);
      expect(session.protocol).toBe('v4.channel.k8s.io');
      session.send(0, 'over v4\n');
      expect((await session.until(1, 8)).toString()).toBe('over v4\n');
      session.ws.close();
      await session.closed;
      await phase(name, 'Succeeded');
      await remove(name);
    });

    it('an exit code other than 0: a Failure status with the code as its cause, and terminated.exitCode', async () => {
      const name = fresh('exit3');
      await create(pod(name, { command: ['sh', '-c', 'read line; echo "said $line" >&2; exit 3'], stdin: true, stdinOnce: true, terminationMessagePolicy: 'FallbackToLogsOnError' }));
      await running(name);
      const session = await attach(name);
      session.send(0, 'bye\n');
      await session.closed;
      expect(session.channel(2).toString()).toBe('said bye\n');
      expect(session.status()).toEqual({
        metadata: {},
        status: 'Failure',
        message: `command terminated with non-zero exit code: container main in pod ${name} exited with code 3`,
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: '3' }] },
      });
      const failed = await phase(name, 'Failed');
      expect(failed.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 3, reason: 'Error', message: 'said bye\n' });
      expect(failed.status.containerStatuses[0].imageID).toMatch(/^docker-pullable:\/\/node@sha256:[0-9a-f]{64}$/);
      expect(failed.status.containerStatuses[0].containerID).toMatch(/^docker:\/\/[0-9a-f]{64}$/);
      await remove(name);
    });

    it('carries 8 MiB each way intact and in order (both directions under backpressure)', async () => {
      const name = fresh('bulk');
      await create(pod(name, echo));
      await running(name);
      const session = await attach(name);
      const data = randomBytes(8 * 1024 * 1024);
      for (let offset = 0; offset < data.length; offset += 64 * 1024) session.send(0, data.subarray(offset, offset + 64 * 1024));
      session.send(255, Buffer.from([0]));
      await session.closed;
      const back = session.channel(1);
      expect(back.length).toBe(data.length);
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      await remove(name);
    });

    it('delivers only what the container writes after the client attached (earlier output is in the log only)', async () => {
      const name = fresh('early');
      await create(pod(name, { command: ['sh', '-c', 'echo early; read line; echo late'], stdin: true, stdinOnce: true }));
      await until(name, () => true);
      const deadline = Date.now() + 10_000;
      while ((await client.call('GET', `${pods}/${name}/log`)).json !== 'early\n' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const session = await attach(name);
      session.send(0, 'go\n');
      await session.closed;
      expect(session.channel(1).toString()).toBe('late\n');
      expect((await client.call('GET', `${pods}/${name}/log`)).json).toBe('early\nlate\n');
      await remove(name);
    });

    it('holds a container back while its client does not read, instead of queueing its output', async () => {
      const name = fresh('flood');
      const bytes = 128 * 1024 * 1024;
      await create(pod(name, { command: ['sh', '-c', `read line; head -c ${bytes} /dev/zero`], stdin: true, stdinOnce: true }));
      await running(name);
      const session = await attach(name);
      const socket = (session.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      socket.pause();
      const before = process.memoryUsage().arrayBuffers;
      session.send(0, 'go\n');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // head is still writing (Docker holds its writes), and the stand-in holds a bounded part of its output (the
      // figure is rough: it counts garbage not yet collected too).
      expect((await get(name)).status.phase).toBe('Running');
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(40 * 1024 * 1024);
      socket.resume();
      await session.closed;
      expect(session.channel(1).length).toBe(bytes);
      expect(session.status()).toEqual({ metadata: {}, status: 'Success' });
      await remove(name);
    });

    it('refuses an attach it cannot serve with 400 Status: no channel protocol, a container not running yet, a container that ended', async () => {
      const waiting = fresh('no-image');
      await create(pod(waiting, { image: 'no-such-image:1' }));
      await until(waiting, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'ErrImagePull');
      const early: Refused = await refused(waiting);
      expect(early).toEqual({ refused: 400, json: expect.objectContaining({ reason: 'BadRequest', message: `container "main" in pod "${waiting}" is waiting to start: ErrImagePull` }) });
      const ended = fresh('ended');
      await create(pod(ended, { command: ['true'] }));
      await phase(ended, 'Succeeded');
      expect((await refused(ended)).json.message).toBe(`container "main" in pod "${ended}" is terminated`);
      const live = fresh('old-protocol');
      await create(pod(live, echo));
      await running(live);
      expect((await refused(live, ['v3.channel.k8s.io', 'channel.k8s.io'])).json.message).toMatch(/none of the offered subprotocols \(v3.channel.k8s.io, channel.k8s.io\)/);
      await Promise.all([remove(waiting), remove(ended), remove(live)]);
    });

    it('refuseAttach(true): the upgrade is answered 400 with a Status, as when the kubelet cannot attach', async () => {
      const name = fresh('refused');
      await create(pod(name, echo));
      await running(name);
      k8s.refuseAttach(true);
      try {
        expect(await refused(name)).toEqual({
          refused: 400,
          json: expect.objectContaining({ kind: 'Status', reason: 'BadRequest', code: 400, message: expect.stringMatching(/^unable to upgrade connection/) }),
        });
      } finally {
        k8s.refuseAttach(false);
      }
      const session = await attach(name);
      session.send(255, Buffer.from([0]));
      await session.closed;
      await remove(name);
    });
  });

  describe('watch and list', () => {
    it('a watch from now: ADDED, MODIFIED up to Running and Succeeded, then DELETED, resourceVersions rising', async () => {
      const name = fresh('watched');
      const watch = client.watch(`${pods}?watch=true&fieldSelector=metadata.name=${name}&timeoutSeconds=30`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await create(pod(name, { command: ['sleep', '1'] }));
      await phase(name, 'Succeeded');
      expect((await remove(name)).json).toMatchObject({ metadata: { name, deletionTimestamp: expect.any(String), deletionGracePeriodSeconds: 0 } });
      const deadline = Date.now() + 5000;
      while (watch.events.at(-1)?.type !== 'DELETED' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      watch.stop();
      const types = watch.events.map((event) => event.type);
      expect(types[0]).toBe('ADDED');
      expect(types.at(-1)).toBe('DELETED');
      expect(types.slice(1, -1).every((type) => type === 'MODIFIED')).toBe(true);
      const phases = watch.events.map((event) => event.object.status?.phase).filter((value, index, all) => value !== all[index - 1]);
      expect(phases).toEqual(['Pending', 'Running', 'Succeeded']);
      const versions = watch.events.map((event) => Number(event.object.metadata.resourceVersion));
      expect(versions).toEqual([...versions].sort((a, b) => a - b));
      expect(new Set(versions).size).toBe(versions.length);
      expect((await client.call('GET', `${pods}/${name}`)).status).toBe(404);
    });

    it('a watch from a resourceVersion replays what changed after it, and ends at timeoutSeconds', async () => {
      const name = fresh('replayed');
      const created = await create(pod(name, { command: ['true'] }));
      await phase(name, 'Succeeded');
      const started = Date.now();
      const watch = client.watch(`${pods}?watch=1&fieldSelector=metadata.name=${name}&resourceVersion=${created.metadata.resourceVersion}&timeoutSeconds=1`);
      await watch.ended;
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(watch.events.length).toBeGreaterThan(0);
      expect(watch.events.every((event) => event.type === 'MODIFIED')).toBe(true);
      expect(watch.events.at(-1)?.object.status?.phase).toBe('Succeeded');
      await remove(name);
    });

    it('selects by label (=, !=, exists, !exists, in, notin) and by field, in a PodList', async () => {
      const group = fresh('group');
      const names = { a: `${group}-a`, b: `${group}-b`, none: `${group}-none` };
      await create(pod(names.a, { command: ['true'] }, {}, { group, role: 'a' }));
      await create(pod(names.b, { command: ['true'] }, {}, { group, role: 'b' }));
      await create(pod(names.none, { command: ['true'] }, {}, { group }));
      const select = async (query: string) => {
        const list = await client.call('GET', `${pods}?${query}`);
        expect(list.json).toMatchObject({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: expect.stringMatching(/^\d+$/) } });
        return list.json.items.map((item: { metadata: { name: string } }) => item.metadata.name).sort();
      };
      const selector = (text: string) => `labelSelector=${encodeURIComponent(`group=${group},${text}`)}`;
      expect(await select(selector('role=a'))).toEqual([names.a]);
      expect(await select(selector('role!=a'))).toEqual([names.b, names.none]);
      expect(await select(selector('role'))).toEqual([names.a, names.b]);
      expect(await select(selector('!role'))).toEqual([names.none]);
      expect(await select(selector('role in (a,b)'))).toEqual([names.a, names.b]);
      expect(await select(selector('role notin (a)'))).toEqual([names.b, names.none]);
      expect(await select(`fieldSelector=metadata.name=${names.b}`)).toEqual([names.b]);
      const bad = await client.call('GET', `${pods}?labelSelector=${encodeURIComponent('role=a b')}`);
      expect(bad.status).toBe(400);
      expect((await client.call('GET', `${pods}?fieldSelector=spec.color=red`)).json.message).toBe('field label not supported: spec.color');
      await Promise.all(Object.values(names).map(remove));
    });
  });

  describe('RBAC, as forbid() takes it away', () => {
    let strict: KubeStandIn;
    let strictClient: PlainClient;
    beforeAll(async () => {
      strict = await startKubeStandIn();
      strictClient = new PlainClient(strict.url, strict.token);
    });
    afterAll(() => strict?.close());

    it("answers 403 with kube-apiserver's message, and a SelfSubjectAccessReview that says not allowed", async () => {
      const user = 'User "system:serviceaccount:asp:asp-runner"';
      strict.forbid('create', 'pods');
      strict.forbid('list', 'networkpolicies');
      strict.forbid('create', 'pods/attach');
      expect(await strictClient.call('POST', pods, pod('denied', {}))).toEqual({
        status: 403,
        json: {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `pods is forbidden: ${user} cannot create resource "pods" in API group "" in the namespace "asp"`,
          reason: 'Forbidden',
          details: { kind: 'pods' },
          code: 403,
        },
      });
      expect((await strictClient.call('GET', '/apis/networking.k8s.io/v1/namespaces/asp/networkpolicies')).json.message).toBe(
        `networkpolicies.networking.k8s.io is forbidden: ${user} cannot list resource "networkpolicies" in API group "networking.k8s.io" in the namespace "asp"`,
      );
      const attachRefused = await refused('any-pod', ['v5.channel.k8s.io'], strictClient);
      expect(attachRefused.refused).toBe(403);
      expect(attachRefused.json.message).toBe(`pods "any-pod" is forbidden: ${user} cannot create resource "pods/attach" in API group "" in the namespace "asp"`);
      const review = async (verb: string, resource: string, subresource?: string) =>
        (
          await strictClient.call('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: { resourceAttributes: { namespace: 'asp', verb, resource, ...(subresource ? { subresource } : {}) } },
          })
        ).json.status.allowed;
      expect([await review('create', 'pods'), await review('create', 'pods', 'attach'), await review('get', 'pods'), await review('delete', 'pods')]).toEqual([false, false, true, true]);
      strict.forbid('create', 'pods', false);
      expect(await review('create', 'pods')).toBe(true);
      const allowed = await strictClient.call('POST', pods, pod('allowed', { command: ['true'] }));
      expect(allowed.status).toBe(201);
      await strictClient.call('DELETE', `${pods}/allowed?gracePeriodSeconds=0`);
    });
  });

  describe('running a pod as a kubelet would', () => {
    it('an image it cannot pull: ErrImagePull, then ImagePullBackOff after about a second, and the pod stays Pending', async () => {
      const name = fresh('unpullable');
      await create(pod(name, { image: 'no-such-image:1' }));
      const pulling = await until(name, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'ErrImagePull');
      expect(pulling.status.containerStatuses[0].state.waiting.message).toMatch(
        /^rpc error: code = NotFound desc = failed to pull and unpack image "docker.io\/library\/no-such-image:1": .*pull access denied.*image "no-such-image:1" not found/,
      );
      const backOff = await until(name, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'ImagePullBackOff', 5000);
      expect(backOff.status.containerStatuses[0].state.waiting.message).toBe('Back-off pulling image "no-such-image:1"');
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await get(name)).status).toMatchObject({ phase: 'Pending', containerStatuses: [{ imageID: '', ready: false, state: { waiting: { reason: 'ImagePullBackOff' } } }] });
      expect(k8s.pods().find((entry) => entry.name === name)?.dockerIds).toEqual([]);
      await remove(name);
    });

    it('init containers run first: one writes into an emptyDir (0777, root-owned) that the container reads through a read-only mount', async () => {
      const name = fresh('init');
      const shared = { name: 'shared', mountPath: '/shared' };
      await create(
        pod(
          name,
          { command: ['sh', '-c', 'cat /shared/mode /shared/file && (touch /shared/x 2>&1 || true)'], volumeMounts: [{ ...shared, readOnly: true }] },
          {
            volumes: [{ name: 'shared', emptyDir: {} }],
            initContainers: [
              {
                name: 'prepare',
                image: NODE,
                command: ['sh', '-c', 'stat -c "%a %U %G" /shared > /shared/mode && echo from-init > /shared/file'],
                securityContext: { runAsUser: 1000, runAsGroup: 1000 },
                volumeMounts: [shared],
              },
            ],
          },
        ),
      );
      const done = await phase(name, 'Succeeded');
      expect(done.status.initContainerStatuses).toEqual([expect.objectContaining({ name: 'prepare', state: { terminated: expect.objectContaining({ exitCode: 0, reason: 'Completed' }) } })]);
      const log = await client.call('GET', `${pods}/${name}/log?container=main`);
      expect(log.json).toBe("777 root root\nfrom-init\ntouch: cannot touch '/shared/x': Read-only file system\n");
      const volume = `k8s_shared_${name}_asp_${done.metadata.uid}`;
      expect(docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe(volume);
      await remove(name);
    });

    it('an init container that fails fails the pod, and the containers never start', async () => {
      const name = fresh('init-fails');
      await create(pod(name, { command: ['true'] }, { initContainers: [{ name: 'prepare', image: NODE, command: ['sh', '-c', 'exit 7'] }] }));
      const failed = await phase(name, 'Failed');
      expect(failed.status.initContainerStatuses[0].state.terminated).toMatchObject({ exitCode: 7, reason: 'Error' });
      expect(failed.status.containerStatuses[0].state).toEqual({ waiting: { reason: 'PodInitializing' } });
      expect(k8s.pods().find((entry) => entry.name === name)?.dockerIds).toHaveLength(1);
      await remove(name);
    });

    it('runAsNonRoot with an image that runs as root, or runAsUser 0: CreateContainerConfigError, as the kubelet words it', async () => {
      const name = fresh('non-root');
      const created = await create(pod(name, { command: ['true'] }, { securityContext: { runAsNonRoot: true } }));
      const refusedPod = await until(name, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'CreateContainerConfigError');
      expect(refusedPod.status.containerStatuses[0].state.waiting.message).toBe(`container has runAsNonRoot and image will run as root (pod: "${name}_asp(${created.metadata.uid})", container: main)`);
      expect(refusedPod.status.phase).toBe('Pending');
      const explicit = fresh('uid-zero');
      await create(pod(explicit, { command: ['true'], securityContext: { runAsNonRoot: true, runAsUser: 0 } }));
      const zero = await until(explicit, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'CreateContainerConfigError');
      expect(zero.status.containerStatuses[0].state.waiting.message).toMatch(/^container's runAsUser breaks non-root policy/);
      await Promise.all([remove(name), remove(explicit)]);
    });

    it('activeDeadlineSeconds: the pod fails with DeadlineExceeded and its containers are killed (137)', async () => {
      const name = fresh('deadline');
      const started = Date.now();
      await create(pod(name, { command: ['sleep', '60'] }, { activeDeadlineSeconds: 2 }));
      const failed = await phase(name, 'Failed', 10_000);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(failed.status).toMatchObject({ reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' });
      const ended = await until(name, (object) => object.status.containerStatuses[0].state.terminated);
      expect(ended.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 137, reason: 'Error' });
      await remove(name);
    });

    it('maps the security context and the limits: seen from inside (/proc/self/status) and in docker inspect', async () => {
      const name = fresh('hardened');
      const status = 'grep -E "^(Uid|Gid|Groups|CapEff|NoNewPrivs|Seccomp):" /proc/self/status';
      await create({
        ...pod(name, {}),
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: { seccompProfile: { type: 'RuntimeDefault' }, supplementalGroups: [4000] },
          containers: [
            {
              name: 'main',
              image: NODE,
              command: ['sh', '-c', status],
              securityContext: {
                runAsUser: 0,
                runAsGroup: 0,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'], add: ['CHOWN', 'CAP_NET_BIND_SERVICE'] },
              },
              resources: { limits: { cpu: '500m', memory: '256Mi', 'ephemeral-storage': '1Gi' } },
            },
            { name: 'user', image: NODE, command: ['sh', '-c', status], securityContext: { runAsUser: 1234, runAsGroup: 2345 } },
          ],
        },
      });
      const done = await phase(name, 'Succeeded');
      expect(done.status.qosClass).toBe('Burstable');
      const facts = async (container: string) =>
        Object.fromEntries(
          ((await client.call('GET', `${pods}/${name}/log?container=${container}`)).json as string)
            .trim()
            .split('\n')
            .map((line) => line.split(/:\s+/)),
        );
      const main = await facts('main');
      expect(main).toMatchObject({ Uid: '0\t0\t0\t0', Gid: '0\t0\t0\t0', CapEff: '0000000000000401', NoNewPrivs: '1', Seccomp: '2' });
      expect(main.Groups?.split(' ')).toContain('4000');
      // The pod's seccomp profile holds for a container that names none.
      expect(await facts('user')).toMatchObject({ Uid: '1234\t1234\t1234\t1234', Gid: '2345\t2345\t2345\t2345', CapEff: '0000000000000000', NoNewPrivs: '0', Seccomp: '2' });
      const [id] = k8s.pods().find((entry) => entry.name === name)?.dockerIds ?? [];
      const inspected = JSON.parse(docker('inspect', id ?? 'none'))[0];
      expect(inspected.HostConfig).toMatchObject({
        NetworkMode: 'none',
        ReadonlyRootfs: true,
        Memory: 256 * 1024 * 1024,
        MemorySwap: 256 * 1024 * 1024,
        NanoCpus: 500_000_000,
        PidsLimit: 321,
        CapDrop: ['ALL'],
        CapAdd: ['CHOWN', 'NET_BIND_SERVICE'],
        SecurityOpt: ['no-new-privileges'],
        Init: false,
        IpcMode: 'private',
        Privileged: false,
        LogConfig: { Type: 'json-file', Config: { 'max-size': '10m' } },
      });
      expect(inspected.Config).toMatchObject({ User: '0:0', Hostname: name, Tty: false, Labels: expect.objectContaining({ run, 'asp.stand-in': name, 'io.kubernetes.container.name': 'main' }) });
      expect(inspected.Config.Env).toContain('KUBERNETES_SERVICE_HOST=10.96.0.1');
      await remove(name);
    });

    it("a Localhost seccomp profile is read from the kubelet's seccomp root; one that is not there is a CreateContainerError", async () => {
      const name = fresh('localhost-seccomp');
      const localhost = (profile: string) => ({ securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: profile } } });
      await create(pod(name, { command: ['sh', '-c', 'grep ^Seccomp: /proc/self/status; mkdir /tmp/x 2>&1 || true'], ...localhost('no-mkdir.json') }));
      await phase(name, 'Succeeded');
      expect((await client.call('GET', `${pods}/${name}/log`)).json).toBe("Seccomp:\t2\nmkdir: cannot create directory '/tmp/x': Operation not permitted\n");
      const missing = fresh('missing-seccomp');
      await create(pod(missing, { command: ['true'], ...localhost('absent.json') }));
      const error = await until(missing, (object) => object.status?.containerStatuses?.[0]?.state.waiting?.reason === 'CreateContainerError');
      expect(error.status.containerStatuses[0].state.waiting.message).toContain(
        `cannot load seccomp profile "${path.join(seccompRoot, 'absent.json')}": open ${path.join(seccompRoot, 'absent.json')}: no such file or directory`,
      );
      await Promise.all([remove(name), remove(missing)]);
    });

    it("expands $(VAR) as the kubelet does ($$ is $), mounts the service account's token unless told not to, and without a seccomp profile runs none", async () => {
      const name = fresh('expansion');
      const manifest = pod(name, {
        // stderr off: the shell's "NOPE: not found" comes in two writes, which the log may interleave with stdout.
        command: ['sh', '-c', 'exec 2>/dev/null; echo "$(GREETING)|$$HOME|$BOTH|$(NOPE)"; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; grep ^Seccomp: /proc/self/status'],
        env: [
          { name: 'GREETING', value: 'hi' },
          { name: 'BOTH', value: '$(GREETING) there' },
        ],
      });
      delete (manifest.spec as { automountServiceAccountToken?: boolean }).automountServiceAccountToken;
      const admitted = await create(manifest);
      expect(admitted.spec.volumes).toEqual([expect.objectContaining({ name: expect.stringMatching(/^kube-api-access-[a-z0-9]{5}$/), projected: expect.any(Object) })]);
      await phase(name, 'Succeeded');
      // $(NOPE) is left as written, so the shell runs NOPE (not found, nothing on stdout) in its place. No seccomp
      // profile named anywhere: what a kubelet without --seccomp-default runs, none at all.
      const log = (await client.call('GET', `${pods}/${name}/log`)).json as string;
      expect(log).toBe('hi|/root|hi there|\nasp\nSeccomp:\t0\n');
      await remove(name);
    });

    it.skipIf(!docker('info', '--format', '{{json .Runtimes}}').includes('runsc'))("runs a pod of a RuntimeClass under its handler (gvisor → Docker's runsc)", async () => {
      const name = fresh('gvisor');
      await create(pod(name, { command: ['true'] }, { runtimeClassName: 'gvisor' }));
      await phase(name, 'Succeeded', 30_000);
      const [id] = k8s.pods().find((entry) => entry.name === name)?.dockerIds ?? [];
      expect(docker('inspect', '--format', '{{.HostConfig.Runtime}}', id ?? 'none')).toBe('runsc');
      await remove(name);
    });
  });

  describe('NetworkPolicies', () => {
    const policies = '/apis/networking.k8s.io/v1/namespaces/asp/networkpolicies';
    const denyAll = (name: string, selector: Record<string, string>) => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name, labels: { run } },
      spec: { podSelector: { matchLabels: selector }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] },
    });

    it('are created, read, listed and deleted; isolated says whether they cut a pod off both ways', async () => {
      const group = fresh('fenced');
      const policy = `deny-${group}`;
      const made = await client.call('POST', policies, denyAll(policy, { fenced: group }));
      expect(made).toMatchObject({ status: 201, json: { kind: 'NetworkPolicy', metadata: { name: policy, namespace: 'asp', uid: expect.any(String), resourceVersion: expect.any(String) } } });
      expect((await client.call('POST', policies, denyAll(policy, { fenced: group }))).json).toMatchObject({
        code: 409,
        reason: 'AlreadyExists',
        message: `networkpolicies.networking.k8s.io "${policy}" already exists`,
      });
      expect((await client.call('GET', `${policies}/${policy}`)).json.spec).toEqual(denyAll(policy, {}).spec && made.json.spec);
      expect((await client.call('GET', `${policies}?labelSelector=run=${run}`)).json).toMatchObject({
        kind: 'NetworkPolicyList',
        items: [expect.objectContaining({ metadata: expect.objectContaining({ name: policy }) })],
      });
      const invalid = await client.call('POST', policies, { ...denyAll('no-selector', {}), spec: { policyTypes: ['Sideways'] } });
      expect(invalid.status).toBe(422);
      // A policy without policyTypes covers Ingress only (the API's default), so it isolates nothing both ways.
      const ingressOnly = await client.call('POST', policies, { ...denyAll(`ingress-${group}`, { ingress: group }), spec: { podSelector: { matchLabels: { ingress: group } } } });
      expect(ingressOnly.json.spec.policyTypes).toEqual(['Ingress']);

      const inside = `${group}-in`;
      const outside = `${group}-out`;
      const half = `${group}-half`;
      await create(pod(inside, { command: ['sleep', '30'] }, {}, { fenced: group }));
      await create(pod(outside, { command: ['sleep', '30'] }));
      await create(pod(half, { command: ['sleep', '30'] }, {}, { ingress: group }));
      await Promise.all([running(inside), running(outside), running(half)]);
      const isolatedOf = (name: string) => k8s.pods().find((entry) => entry.name === name)?.isolated;
      expect([isolatedOf(inside), isolatedOf(outside), isolatedOf(half)]).toEqual([true, false, false]);

      expect(await client.call('DELETE', `${policies}/${policy}`)).toMatchObject({ status: 200, json: { kind: 'Status', status: 'Success', details: { name: policy, kind: 'networkpolicies' } } });
      expect((await client.call('GET', `${policies}/${policy}`)).status).toBe(404);
      expect(isolatedOf(inside)).toBe(false);
      await client.call('DELETE', `${policies}/ingress-${group}`);
      await Promise.all([remove(inside), remove(outside), remove(half)]);
      // A deleted pod is listed as Deleted, with isolated as it was while it ran.
      expect(k8s.pods().find((entry) => entry.name === inside)).toMatchObject({ phase: 'Deleted', isolated: false });
    });
  });

  describe('deleting pods', () => {
    it('gracePeriodSeconds 0: gone from the API at once, its containers and volumes removed right after', async () => {
      const name = fresh('deleted');
      await create(pod(name, { command: ['sleep', '60'], volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] }, { volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory' } }] }));
      await running(name);
      expect(docker('ps', '-q', '--filter', `label=asp.stand-in=${name}`)).not.toBe('');
      const answer = await client.call('DELETE', `${pods}/${name}`, { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 });
      expect(answer.status).toBe(200);
      expect((await client.call('GET', `${pods}/${name}`)).status).toBe(404);
      expect((await client.call('DELETE', `${pods}/${name}`)).json).toMatchObject({ code: 404, message: `pods "${name}" not found` });
      const deadline = Date.now() + 10_000;
      while (docker('ps', '-a', '-q', '--filter', `label=asp.stand-in=${name}`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(docker('ps', '-a', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
      expect(docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
    });

    it('deleting a pod while an init container runs kills it and leaves nothing, and the containers never start', async () => {
      const name = fresh('deleted-in-init');
      const data = { name: 'data', mountPath: '/data' };
      await create(
        pod(
          name,
          { command: ['true'], volumeMounts: [data] },
          { volumes: [{ name: 'data', emptyDir: {} }], initContainers: [{ name: 'slow', image: NODE, command: ['sleep', '60'], volumeMounts: [data] }] },
        ),
      );
      await until(name, (object) => object.status?.initContainerStatuses?.[0]?.state.running);
      const watch = client.watch(`${pods}?watch=true&fieldSelector=metadata.name=${name}`);
      await remove(name);
      const deadline = Date.now() + 10_000;
      while ((docker('ps', '-a', '-q', '--filter', `label=asp.stand-in=${name}`) || docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${name}`)) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(docker('ps', '-a', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
      expect(docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
      watch.stop();
      expect(watch.events.map((event) => event.type)).toEqual(['ADDED', 'DELETED']);
      expect(k8s.pods().find((entry) => entry.name === name)).toMatchObject({ phase: 'Deleted', dockerIds: [expect.any(String)] });
    });

    it('with a grace period: Terminating (deletionTimestamp) until its containers end on SIGTERM, then DELETED', async () => {
      const name = fresh('graceful');
      await create(pod(name, { command: ['sh', '-c', 'trap "exit 0" TERM; sleep 60 & wait'] }, { terminationGracePeriodSeconds: 20 }));
      await running(name);
      const watch = client.watch(`${pods}?watch=true&fieldSelector=metadata.name=${name}`);
      const started = Date.now();
      expect((await client.call('DELETE', `${pods}/${name}`)).json.metadata).toMatchObject({ deletionGracePeriodSeconds: 20, deletionTimestamp: expect.any(String) });
      expect((await get(name)).metadata.deletionTimestamp).toEqual(expect.any(String));
      const deadline = Date.now() + 15_000;
      while ((await client.call('GET', `${pods}/${name}`)).status !== 404 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(Date.now() - started).toBeLessThan(15_000);
      watch.stop();
      expect(watch.events.at(-1)).toMatchObject({ type: 'DELETED', object: { status: { containerStatuses: [{ state: { terminated: { exitCode: 0 } } }] } } });
    });
  });

  it('close() removes every container and volume of its pods, whatever state they are in', async () => {
    const own = await startKubeStandIn();
    const ownClient = new PlainClient(own.url, own.token);
    const names = [fresh('left-running'), fresh('left-pulling')];
    const volume = { volumes: [{ name: 'data', emptyDir: {} }] };
    expect((await ownClient.call('POST', pods, pod(names[0] ?? '', { command: ['sleep', '60'], volumeMounts: [{ name: 'data', mountPath: '/data' }] }, volume))).status).toBe(201);
    expect((await ownClient.call('POST', pods, pod(names[1] ?? '', { image: 'no-such-image:2' }, volume))).status).toBe(201);
    const deadline = Date.now() + 10_000;
    while (!own.pods().every((entry) => entry.phase === 'Running' || entry.manifest.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${names[1] ?? ''}`)).not.toBe('');
    await own.close();
    for (const name of names) {
      expect(docker('ps', '-a', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
      expect(docker('volume', 'ls', '-q', '--filter', `label=asp.stand-in=${name}`)).toBe('');
    }
    await expect(fetch(`${own.url}/version`)).rejects.toThrow();
  });
});
