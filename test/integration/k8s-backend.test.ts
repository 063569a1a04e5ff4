import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { Pod } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { expectHardenedStep, PROBE } from '../fixtures/sandbox-probe.js';
import { asp, type CliRun } from '../helpers/cli.js';
import { docker, dockerAvailable, leftovers } from '../helpers/docker.js';
import { fetchBundle, gitIn, helloRepo, repoWith } from '../helpers/repos.js';
import { ensureTestImage } from '../helpers/test-images.js';
import { startKubeStandIn, type KubeStandIn } from '../helpers/k8s-stand-in.js';
import { KubernetesBackend } from '../../src/k8s/k8s-backend.js';
import { ownershipLabels } from '../../src/backend/ownership-labels.js';
import { CleanupStack } from '../../src/core/cleanup-stack.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { freePort } from '../helpers/ports.js';
import { egressRunArgs, getThroughProxy } from '../fixtures/egress-client.js';
import { serveBytes } from '../helpers/egress-servers.js';
import { createHash } from 'node:crypto';

/**
 * Issue 18: `--backend k8s` end to end, against the Kubernetes API stand-in of test/helpers/k8s-stand-in.ts (no
 * cluster runs here). The stand-in checks asp's requests against the API's schemas and runs each pod as real Docker
 * containers with its fields mapped, so the runner injected by the init container, the protocol over pods/attach, the
 * model gateway and the keeper's copy-out all run for real; what a kubelet and a CNI would add, it says it does not.
 */

// CI registers runsc on the main dockerd (scripts/enable-gvisor.sh): there a missing runsc fails this suite.
const gvisor = (dockerAvailable && (await docker.info()).runtimes.includes('runsc')) || process.env.CI === 'true';

interface RunJson {
  status: string;
  exitCode: number;
  workspacePath: string;
  taskId: string;
  steps: Array<{ name: string; status: string; exitCode: number | null }>;
  warnings: string[];
  models?: { provider: string; calls: number };
  egress?: { connections: number; refused: number; bytesIn: number; bytesOut: number };
  change?: { filesChanged: number };
  error?: { code: string; message: string };
}

interface TraceJson {
  trace: { metadata: Record<string, unknown> };
}

describe.skipIf(!dockerAvailable)('the Kubernetes backend, through the API stand-in', () => {
  let cluster: KubeStandIn;
  const workspaces = mkdtempSync(path.join(os.tmpdir(), 'asp-k8s-'));
  const env = (): Record<string, string> => ({ KUBECONFIG: cluster.kubeconfigPath, ASP_BACKEND: 'k8s', ASP_WORKSPACES: workspaces, ASP_K8S_START_TIMEOUT: '60s' });
  const cli = (args: string[], extra: Record<string, string> = {}): Promise<CliRun> => asp(args, { ...env(), ...extra });
  const run = async (args: string[], extra: Record<string, string> = {}): Promise<{ cli: CliRun; result: RunJson }> => {
    const ran = await cli(['run', '--json', ...args], extra);
    try {
      return { cli: ran, result: JSON.parse(ran.stdout) as RunJson };
    } catch {
      throw new Error(`asp run printed no JSON (exit ${ran.code}): ${ran.stderr}`);
    }
  };
  const createdPods = () =>
    cluster.requests.filter((request) => request.method === 'POST' && /\/pods$/.test(request.path)).map((request) => request.body as { metadata: { name: string; labels: Record<string, string> } });
  const livePods = () => cluster.pods().filter((pod) => pod.phase !== 'Deleted');

  /** The kubelet's seccomp dir of the stand-in, with asp's profile installed as an operator would. */
  const seccompRoot = mkdtempSync(path.join(os.tmpdir(), 'asp-k8s-seccomp-'));

  beforeAll(async () => {
    const profile = await asp(['image', 'seccomp-profile']);
    mkdirSync(path.join(seccompRoot, 'profiles'));
    writeFileSync(path.join(seccompRoot, 'profiles', 'asp.json'), profile.stdout);
    const gvisor = await asp(['image', 'seccomp-profile', '--gvisor']);
    writeFileSync(path.join(seccompRoot, 'profiles', 'asp-gvisor.json'), gvisor.stdout);
    cluster = await startKubeStandIn({ namespace: 'asp', runtimeClasses: [{ name: 'gvisor', handler: 'runsc' }], seccompRoot });
  }, 120_000);

  afterAll(async () => {
    try {
      expect(livePods().map((pod) => pod.name)).toEqual([]);
    } finally {
      await cluster?.close();
    }
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  }, 120_000);

  it('runs a real test suite in a pod: the demo repository under node --test, then deletes the pod', async () => {
    const { cli: ran, result } = await run(['--repo', helloRepo(), '--step', 'tests=node --test test/']);
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(result.steps).toEqual([expect.objectContaining({ name: 'tests', status: 'passed', exitCode: 0 })]);
    expect(ran.stderr).toMatch(/\[tests\] .*pass \d+/);
    const pod = createdPods().at(-1);
    expect(pod?.metadata.labels).toMatchObject({ 'asp.managed': 'true', 'asp.task': result.taskId });
    expect(() => new Pod(pod as never).validate()).not.toThrow();
    // The pod was behind asp's deny-all policy while it ran, and is gone now.
    expect(cluster.pods().find((entry) => entry.name === pod?.metadata.name)?.isolated).toBe(true);
    expect(livePods()).toEqual([]);
    // The trace says which image ran, by the digest the kubelet reported.
    const trace = JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'trace.json'), 'utf8')) as TraceJson;
    expect(trace.trace.metadata.image_id).toMatch(/^docker-pullable:\/\/asp-sandbox@sha256:[0-9a-f]{64}$/);
  }, 180_000);

  it('a failing test fails the task (exit 1), and the runner said it ran hardened', async () => {
    const { result } = await run(['--repo', repoWith({ 'probe.sh': PROBE }), '--step', 'probe=. ./probe.sh', '--step', 'fail=exit 3']);
    expect(result.exitCode).toBe(1);
    expect(result.steps.map((step) => [step.name, step.status])).toEqual([
      ['probe', 'passed'],
      ['fail', 'failed'],
    ]);
    const facts = keyValues(readFileSync(path.join(result.workspacePath, '.asp', 'hardening.txt'), 'utf8'));
    expectHardenedStep(facts);
  }, 180_000);

  it("brings the change back as a commit in a bundle, and .asp/ past the stream's limit through the keeper", async () => {
    const repo = repoWith({ 'README.md': 'x\n' });
    // 20 MiB of artifacts: more than the protocol streams (16 MiB), so they come back through the keeper's tar.
    const { cli: ran, result } = await run(['--repo', repo, '--step', 'edit=echo changed > CHANGED.md && head -c 20971520 /dev/zero > $ASP_ARTIFACTS/big.bin']);
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(result.change?.filesChanged).toBe(1);
    const check = fetchBundle(repo, result);
    expect(gitIn(check, 'show', 'incoming:CHANGED.md')).toBe('changed');
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'big.bin')).length).toBe(20 * 1024 * 1024);
    // It came through the keeper: asp attached to it (and only for this task's pod).
    const keeperAttaches = cluster.requests.filter((request) => request.path.endsWith('/attach') && request.query.container === 'keeper');
    expect(keeperAttaches.map((request) => request.path)).toEqual([expect.stringContaining(result.taskId)]);
  }, 180_000);

  it('runs an image without asp in it (python, no node or git): the runtime comes from an init container, pytest passes', async () => {
    const python = await ensureTestImage('python');
    const repo = repoWith({ 'test_sum.py': 'def test_sum():\n    assert 1 + 1 == 2\n' });
    const { cli: ran, result } = await run(['--repo', repo, '--image', python, '--step', 'tests=python3 -m pytest -p no:cacheprovider -q']);
    expect(result.exitCode, ran.stderr).toBe(0);
    const pod = createdPods().at(-1) as unknown as { spec: { initContainers?: Array<{ name: string }>; containers: Array<{ name: string; image: string }> } };
    expect(pod.spec.initContainers?.map((container) => container.name)).toEqual(['asp-runtime']);
    expect(pod.spec.containers[0]?.image).toBe(python);
  }, 300_000);

  it('a clean-room check runs in a pod of its own, with a check dir steps can read and not change', async () => {
    const hidden = mkdtempSync(path.join(os.tmpdir(), 'asp-k8s-check-'));
    writeFileSync(path.join(hidden, 'expected.txt'), 'changed\n');
    const check = 'diff $ASP_CHECK_DIR/expected.txt CHANGED.md && ! touch $ASP_CHECK_DIR/planted 2>/dev/null && ! rm -f $ASP_CHECK_DIR/expected.txt 2>/dev/null; test -f $ASP_CHECK_DIR/expected.txt';
    const { cli: ran, result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'edit=echo changed > CHANGED.md', '--check', `verify=${check}`, '--check-dir', hidden]);
    expect(result.exitCode, ran.stderr).toBe(0);
    const checkPod = createdPods().find((pod) => pod.metadata.name.endsWith('-check') && pod.metadata.labels['asp.task'] === result.taskId);
    expect(checkPod).toBeDefined();
  }, 180_000);

  it("asp's own seccomp profile as a Localhost profile the nodes hold; a missing one ends the task before it starts", async () => {
    const { cli: ran, result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'ok=grep -q "^Seccomp:.*2" /proc/self/status'], { ASP_K8S_SECCOMP_PROFILE: 'profiles/asp.json' });
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(ran.stderr).not.toMatch(/RuntimeDefault/);
    const pod = createdPods().at(-1) as unknown as { spec: { containers: Array<{ securityContext: { seccompProfile: unknown } }> } };
    expect(pod.spec.containers[0]?.securityContext.seccompProfile).toEqual({ type: 'Localhost', localhostProfile: 'profiles/asp.json' });
    const missing = await cli(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'a=true'], { ASP_K8S_SECCOMP_PROFILE: 'profiles/none.json' });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/the kubelet cannot start task in pod asp-\S+ \(CreateContainerError/);
  }, 180_000);

  it('passes --env values as written (no $(VAR) expansion by the kubelet) and none of the KUBERNETES_* variables the kubelet adds', async () => {
    const odd = 'a$(HOME)b$$c$';
    const { cli: ran, result } = await run(
      ['--repo', repoWith({ 'README.md': 'x\n' }), '--env', 'ODD', '--step', 'env=printf %s "$ODD" > $ASP_ARTIFACTS/odd.txt; env | grep -c ^KUBERNETES_ > $ASP_ARTIFACTS/kube.txt; true'],
      { ODD: odd },
    );
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'odd.txt'), 'utf8')).toBe(odd);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'kube.txt'), 'utf8').trim()).toBe('0');
    // The value came over attach, not in the pod's spec (which whoever may read pods in the namespace reads).
    const pod = createdPods().at(-1);
    expect(JSON.stringify(pod)).not.toContain('ODD');
    expect(JSON.stringify(pod)).not.toContain(odd);
  }, 180_000);

  it.runIf(gvisor)(
    '--runtime gvisor names the RuntimeClass, and the pod runs under runsc; a class the cluster lacks is refused',
    async () => {
      const { cli: ran, result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--runtime', 'gvisor', '--step', 'kernel=uname -r > $ASP_ARTIFACTS/kernel.txt'], {
        ASP_K8S_SECCOMP_PROFILE: 'profiles/asp-gvisor.json',
      });
      expect(result.exitCode, ran.stderr).toBe(0);
      // gVisor's own kernel says it is 4.4.0, whatever the host runs.
      expect(readFileSync(path.join(result.workspacePath, '.asp', 'kernel.txt'), 'utf8').trim()).toBe('4.4.0');
      const pod = createdPods().at(-1) as unknown as { spec: { runtimeClassName?: string } };
      expect(pod.spec.runtimeClassName).toBe('gvisor');
      const refused = await cli(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--runtime', 'kata', '--step', 'a=true']);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toMatch(/the cluster has no RuntimeClass "kata" \(it has: gvisor\)/);
    },
    180_000,
  );

  it("reaps what steps orphan, as Docker's init does: no zombie is left in the pod", async () => {
    const { cli: ran, result } = await run([
      '--repo',
      repoWith({ 'README.md': 'x\n' }),
      '--step',
      'orphans=for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.2 &); done; sleep 1',
      '--step',
      "count=ps -eo stat= | grep -c '^Z' > $ASP_ARTIFACTS/zombies.txt; true",
    ]);
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'zombies.txt'), 'utf8').trim()).toBe('0');
  }, 180_000);

  it('the model gateway answers over attach: the ASP pipeline replays its cassette in a pod with no network', async () => {
    const cassette = path.resolve(import.meta.dirname, '..', '..', 'examples', 'asp-demo', 'cassette.json');
    const { cli: ran, result } = await run(['--repo', helloRepo(), '--task', 'Add a greetAll function', '--pipeline', 'asp'], { ASP_MODEL: `cassette:${cassette}` });
    expect(result.exitCode, ran.stderr).toBe(0);
    expect(result.models).toMatchObject({ provider: 'cassette', calls: 9 });
  }, 300_000);

  it('egress through the host over attach (--allow-host): the pod stays behind its deny-all policy, the host dials', async () => {
    const body = Buffer.alloc(6 * 1024 * 1024, 3);
    const server = await serveBytes(body);
    const port = server.port;
    try {
      const { cli: ran, result } = await run(egressRunArgs(port, [`plain=${getThroughProxy(port)}`, `tunnel=${getThroughProxy(port, '--tunnel')}`, `refused=${getThroughProxy(port + 1)}`]));
      expect(result.exitCode, ran.stderr).toBe(0);
      const digest = createHash('sha256').update(body).digest('hex');
      expect(ran.stderr).toContain(`[plain] GET http://127.0.0.1:${port}/blob: 200 bytes ${body.length} sha256 ${digest}`);
      expect(ran.stderr).toContain(`[tunnel] GET http://127.0.0.1:${port}/blob: 200 bytes ${body.length} sha256 ${digest}`);
      expect(ran.stderr).toContain(`[refused] [asp: egress to 127.0.0.1:${port + 1} refused: 127.0.0.1:${port + 1} is an IP address not on the allowlist`);
      expect(result.egress).toMatchObject({ connections: 3, refused: 1 });
      expect(result.egress?.bytesIn).toBeGreaterThan(2 * body.length);
      const pod = createdPods().at(-1);
      expect(cluster.pods().find((entry) => entry.name === pod?.metadata.name)?.isolated).toBe(true);
    } finally {
      await server.close();
    }
  }, 180_000);

  it('ends a task at its deadline with exit 124 and deletes the pod', async () => {
    const started = Date.now();
    const { result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'slow=sleep 120', '--timeout', '8s']);
    expect(result.exitCode).toBe(124);
    expect(Date.now() - started).toBeLessThan(90_000);
    expect(livePods()).toEqual([]);
  }, 180_000);

  it('--dry-run prints the NetworkPolicy and the pod as YAML (or JSON) that the API schemas accept, and calls no API', async () => {
    const before = cluster.requests.length;
    const printed = await cli(['run', '--dry-run', '--repo', helloRepo(), '--step', 'tests=node --test', '--namespace', 'review']);
    expect(printed.code, printed.stderr).toBe(0);
    const documents = yaml.loadAll(printed.stdout) as Array<{ kind: string; metadata: { namespace: string } }>;
    expect(documents.map((document) => document.kind)).toEqual(['NetworkPolicy', 'Pod']);
    expect(documents.map((document) => document.metadata.namespace)).toEqual(['review', 'review']);
    expect(() => new NetworkPolicy(documents[0] as never).validate()).not.toThrow();
    expect(() => new Pod(documents[1] as never).validate()).not.toThrow();
    const json = await cli(['run', '--dry-run', '--json', '--repo', helloRepo(), '--step', 'tests=node --test', '--image', 'python:3.12']);
    const manifests = JSON.parse(json.stdout) as Array<{ kind: string; spec: { initContainers?: unknown[] } }>;
    expect(manifests[1]?.spec.initContainers).toHaveLength(1);
    // The values of --env variables never appear: only where they would come from.
    const secretive = await cli(['run', '--dry-run', '--repo', helloRepo(), '--step', 'tests=node --test', '--env', 'DRY_SECRET'], { DRY_SECRET: 'ghp_dry-run-secret' });
    expect(secretive.stdout).not.toContain('ghp_dry-run-secret');
    // On Kubernetes not even the name: the values go over attach, never into the pod's spec.
    expect(secretive.stdout).not.toContain('DRY_SECRET');
    const docker = await cli(['run', '--dry-run', '--backend', 'docker', '--repo', helloRepo(), '--step', 'tests=node --test', '--env', 'DRY_SECRET'], { DRY_SECRET: 'ghp_dry-run-secret' });
    expect(docker.stdout).not.toContain('ghp_dry-run-secret');
    expect(docker.stdout).toContain('DRY_SECRET=<from the host: DRY_SECRET>');
    expect(cluster.requests.length).toBe(before);
  }, 60_000);

  it('asp doctor --backend k8s names the cluster and the RBAC asp has', async () => {
    const doctor = await cli(['doctor', '--json']);
    const report = JSON.parse(doctor.stdout) as { exitCode: number; checks: Array<{ name: string; ok: boolean; detail: string }> };
    expect(report.exitCode, doctor.stdout).toBe(0);
    expect(report.checks.find((check) => check.name === 'k8s')?.detail).toMatch(/^Kubernetes v1\.31\.0-asp-stand-in \(linux\/amd64\) at http:\/\/127\.0\.0\.1:\d+ \(namespace asp\)/);
    expect(report.checks.find((check) => check.name === 'rbac')).toMatchObject({ ok: true });
    // Attach is one verb or the other by the cluster's version: either is enough, neither is named.
    cluster.forbid('create', 'pods/attach');
    try {
      expect((await cli(['doctor'])).code).toBe(0);
      cluster.forbid('get', 'pods/attach');
      const neither = await cli(['doctor']);
      expect(neither.code).toBe(3);
      expect(neither.stdout).toMatch(/FAIL {2}rbac {5}asp may not create pods\/attach in the namespace/);
    } finally {
      cluster.forbid('create', 'pods/attach', false);
      cluster.forbid('get', 'pods/attach', false);
    }
  }, 60_000);

  /** Starts `asp run` with a step that sleeps, and resolves once its pod runs; the child is the caller's to end. */
  const startLongRun = async (id: string) => {
    const child = spawn(
      process.execPath,
      [path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs'), 'run', '--json', '--repo', repoWith({ 'README.md': 'x\n' }), '--id', id, '--step', 'wait=sleep 300'],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ASP_HOME: mkdtempSync(path.join(os.tmpdir(), 'asp-home-')), ...env() },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const output = { stdout: '', stderr: '' };
    child.stdout.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
    const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
    const deadline = Date.now() + 90_000;
    // Running, and the step started (its first protocol line came over attach).
    while (!(livePods().some((pod) => pod.name.includes(id) && pod.phase === 'Running') && output.stderr.includes('step wait')) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return { child, output, closed };
  };

  it('Ctrl-C stops the task (exit 130) and deletes its pod', async () => {
    const id = `k8s-int-${process.pid}`;
    const { child, output, closed } = await startLongRun(id);
    expect(
      livePods().some((pod) => pod.name.includes(id)),
      output.stderr,
    ).toBe(true);
    child.kill('SIGINT');
    expect(await closed, output.stderr).toBe(130);
    expect(livePods().some((pod) => pod.name.includes(id))).toBe(false);
  }, 180_000);

  it('a pod deleted under a running task fails it, says the sandbox ended without reporting, and leaves nothing', async () => {
    const id = `k8s-gone-${process.pid}`;
    const { output, closed } = await startLongRun(id);
    const pod = livePods().find((entry) => entry.name.includes(id));
    expect(pod, output.stderr).toBeDefined();
    const deleted = await fetch(`${cluster.url}/api/v1/namespaces/asp/pods/${pod?.name}?gracePeriodSeconds=0`, { method: 'DELETE', headers: { Authorization: `Bearer ${cluster.token}` } });
    expect(deleted.status).toBe(200);
    const code = await closed;
    const result = JSON.parse(output.stdout) as RunJson;
    // As a container killed under a step on Docker: the step failed, the sandbox said nothing more.
    expect([code, result.exitCode, result.steps.map((step) => step.status)], output.stderr).toEqual([1, 1, ['failed']]);
    expect(result.warnings).toContain('the sandbox ended without reporting (exit 137: killed (SIGKILL))');
    expect(livePods().some((entry) => entry.name.includes(id))).toBe(false);
  }, 180_000);

  it('a batch split in two shards, its lines naming "backend": "k8s", merges into one report of the whole list', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-k8s-batch-'));
    const repo = repoWith({ 'README.md': 'x\n' });
    const ids = Array.from({ length: 6 }, (_, index) => `k8s-shard-${process.pid}-${index}`);
    const list = path.join(dir, 'tasks.jsonl');
    writeFileSync(list, ids.map((id) => JSON.stringify({ id, repo, backend: 'k8s', steps: [{ name: 'ok', run: 'true' }] })).join('\n') + '\n');
    const pods = createdPods().length;
    const shards = [];
    for (const index of [0, 1]) {
      // ASP_BACKEND is docker here: only the lines' own "backend" sends them to the cluster.
      const ran = await cli(['batch', list, '--shard', `${index}/2`, '--report', path.join(dir, `report-${index}.json`), '--concurrency', '3'], { ASP_BACKEND: 'docker' });
      expect(ran.code, ran.stderr).toBe(0);
      shards.push(ran);
    }
    expect(createdPods().length - pods).toBe(ids.length);
    const merged = await cli(['batch', 'merge-reports', path.join(dir, 'report.json'), path.join(dir, 'report-0.json'), path.join(dir, 'report-1.json'), '--json']);
    expect(merged.code, merged.stderr).toBe(0);
    const report = JSON.parse(merged.stdout) as { tasks: Array<{ taskId: string; status: string }>; missingShards: unknown[] };
    expect(report.tasks.map((task) => task.taskId).sort()).toEqual([...ids].sort());
    expect(report.tasks.every((task) => task.status === 'passed')).toBe(true);
    expect(report.missingShards).toEqual([]);
  }, 240_000);

  describe('the reaper on the cluster', () => {
    it("takes a pod of another host's supervisor only past its asp.expires-at (an annotation: labels cannot hold it)", async () => {
      const backend = new KubernetesBackend({
        env: { KUBECONFIG: cluster.kubeconfigPath },
        runnerImage: imageContext().tag,
        timeoutMs: 30_000,
        startTimeoutMs: 60_000,
        warn: () => {},
      });
      const make = async (taskId: string, expiresAt: Date) =>
        backend.createSandbox(
          {
            taskId,
            runId: 'r1',
            role: 'task',
            image: imageContext().tag,
            labels: ownershipLabels({ taskId, runId: 'r1', supervisor: { host: 'another-host.example', pid: 4242, startTicks: 1 }, expiresAt, keep: false }),
            limits: limitsSchema.parse({}),
            env: {},
            runtime: undefined,
            checkDir: false,
          },
          new CleanupStack(),
        );
      const stale = `k8s-expired-${process.pid}`;
      const fresh = `k8s-fresh-${process.pid}`;
      await make(stale, new Date(Date.now() - 60_000));
      await make(fresh, new Date(Date.now() + 3_600_000));
      const reaped = await cli(['reap', '--json']);
      expect(reaped.code, reaped.stderr).toBe(0);
      const report = JSON.parse(reaped.stdout) as { items: Array<{ kind: string; taskId: string; reason: string; outcome: string }>; skipped: Record<string, number> };
      expect(report.items).toContainEqual(expect.objectContaining({ kind: 'pod', taskId: stale, reason: 'expired', outcome: 'removed' }));
      expect(report.items.some((item) => item.taskId === fresh)).toBe(false);
      expect(report.skipped['not-expired']).toBeGreaterThanOrEqual(1);
      expect(livePods().some((pod) => pod.name.includes(stale))).toBe(false);
      // The fresh one is another host's to clean up; this suite removes it itself.
      await backend.removeOwned({ kind: 'sandbox', ref: livePods().find((pod) => pod.name.includes(fresh))?.name ?? '', name: fresh, labels: {}, createdAt: undefined });
      expect(livePods().some((pod) => pod.name.includes(fresh))).toBe(false);
    }, 120_000);

    it("reaps the pod of a SIGKILLed supervisor and leaves a live supervisor's pod alone", async () => {
      const id = `k8s-reap-${process.pid}`;
      const { child, output, closed } = await startLongRun(id);
      try {
        expect(
          livePods().some((pod) => pod.name.includes(id)),
          output.stderr,
        ).toBe(true);
        const alive = await cli(['reap', '--json']);
        expect(alive.code, alive.stderr).toBe(0);
        expect((JSON.parse(alive.stdout) as { skipped: Record<string, number> }).skipped['supervisor-alive']).toBeGreaterThanOrEqual(1);
        expect(livePods().some((pod) => pod.name.includes(id))).toBe(true);
      } finally {
        child.kill('SIGKILL');
        await closed;
      }
      const reaped = await cli(['reap', '--json']);
      expect(reaped.code, reaped.stderr).toBe(0);
      const report = JSON.parse(reaped.stdout) as { items: Array<{ kind: string; name: string; reason: string; outcome: string }> };
      expect(report.items).toContainEqual(expect.objectContaining({ kind: 'pod', reason: 'supervisor-gone', outcome: 'removed' }));
      expect(livePods().some((pod) => pod.name.includes(id))).toBe(false);
      // --all with no pod left takes asp's NetworkPolicy too.
      const all = await cli(['reap', '--all']);
      expect(all.stdout).toMatch(/removed NetworkPolicy asp\/asp-sandbox-deny-all: no pod of asp is left/);
    }, 240_000);
  });

  describe('bad input and a cluster that says no', () => {
    const failing = async (args: string[], extra: Record<string, string | undefined>) => {
      const ran = await asp(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'a=true', ...args], { ASP_WORKSPACES: workspaces, ASP_BACKEND: 'k8s', ...extra });
      return { code: ran.code, line: ran.stderr.trim().split('\n').pop() ?? '' };
    };

    it('an API server that accepts and never answers: exit 3 at ASP_DOCKER_TIMEOUT, not a hang', async () => {
      const silent = createServer(() => {
        /* never answers */
      });
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const port = (silent.address() as AddressInfo).port;
      const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-kube-')), 'config');
      writeFileSync(config, readFileSync(cluster.kubeconfigPath, 'utf8').replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`));
      try {
        const started = Date.now();
        expect(await failing([], { KUBECONFIG: config, ASP_DOCKER_TIMEOUT: '2s' })).toEqual({ code: 3, line: expect.stringMatching(/does not answer \(no answer within 2 s\)/) });
        expect(Date.now() - started).toBeLessThan(30_000);
      } finally {
        silent.closeAllConnections();
        await new Promise((resolve) => silent.close(resolve));
      }
    }, 60_000);

    it('no kubeconfig: exit 2, says where it looked', async () => {
      const empty = mkdtempSync(path.join(os.tmpdir(), 'asp-nokube-'));
      expect(await failing([], { HOME: empty })).toEqual({
        code: 2,
        line: expect.stringMatching(/^asp: error: no kubeconfig: .*\.kube\/config does not exist and asp does not run in a cluster — point KUBECONFIG/),
      });
      expect(await failing([], { KUBECONFIG: path.join(empty, 'missing') })).toMatchObject({ code: 2, line: expect.stringMatching(/none of the files KUBECONFIG names exists/) });
    }, 60_000);

    it('an API server that does not answer: exit 3 within the timeout', async () => {
      const port = await freePort();
      const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-kube-')), 'config');
      writeFileSync(config, readFileSync(cluster.kubeconfigPath, 'utf8').replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`));
      expect(await failing([], { KUBECONFIG: config })).toEqual({
        code: 3,
        line: expect.stringMatching(/^asp: error: the Kubernetes API server http:\/\/127\.0\.0\.1:\d+ does not answer \(ECONNREFUSED\)/),
      });
    }, 60_000);

    it('forbidden (403): exit 3, naming the verb asp lacks', async () => {
      cluster.forbid('create', 'pods');
      try {
        expect(await failing([], { KUBECONFIG: cluster.kubeconfigPath })).toEqual({
          code: 3,
          line: expect.stringMatching(/^asp: error: the Kubernetes API server refused to let asp create pods \(403\): pods is forbidden: .*— grant "create pods"/),
        });
        const doctor = await cli(['doctor']);
        expect(doctor.code).toBe(3);
        expect(doctor.stdout).toMatch(/FAIL {2}rbac {5}asp may not create pods in the namespace/);
      } finally {
        cluster.forbid('create', 'pods', false);
      }
    }, 60_000);

    it('an attach the server refuses: exit 3, and the pod is deleted', async () => {
      cluster.refuseAttach(true);
      try {
        const { code, line } = await failing([], { KUBECONFIG: cluster.kubeconfigPath });
        expect(code).toBe(3);
        expect(line).toMatch(/^asp: error: cannot attach to task of pod asp-/);
      } finally {
        cluster.refuseAttach(false);
      }
      expect(livePods()).toEqual([]);
    }, 120_000);

    it("a mutating webhook that adds a hostPath to asp's pod: the pod is removed before anything runs in it (exit 3)", async () => {
      cluster.mutatePods((pod) => {
        const spec = pod.spec as { volumes: unknown[]; containers: Array<{ volumeMounts: unknown[] }> };
        spec.volumes.push({ name: 'dsdsocket', hostPath: { path: '/var/run/datadog' } });
        spec.containers[0]?.volumeMounts.push({ name: 'dsdsocket', mountPath: '/var/run/datadog' });
      });
      try {
        const { code, line } = await failing([], { KUBECONFIG: cluster.kubeconfigPath });
        expect(code).toBe(3);
        expect(line).toMatch(
          /^asp: error: the cluster changed the pod asp asked for \(container task: mounts .* came back as dsdsocket:\/var\/run\/datadog:rw, .*; volume dsdsocket \(hostPath\) was added\): it was removed before anything ran in it — an admission webhook/,
        );
      } finally {
        cluster.mutatePods(undefined);
      }
      expect(livePods()).toEqual([]);
    }, 60_000);

    it("another NetworkPolicy that would open asp's pods (allow all egress): no pod is made (exit 3)", async () => {
      const policies = `${cluster.url}/apis/networking.k8s.io/v1/namespaces/asp/networkpolicies`;
      const headers = { Authorization: `Bearer ${cluster.token}`, 'Content-Type': 'application/json' };
      const made = await fetch(policies, {
        method: 'POST',
        headers,
        body: JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'allow-all-egress' }, spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{}] } }),
      });
      expect(made.status).toBe(201);
      const pods = createdPods().length;
      try {
        const { code, line } = await failing([], { KUBECONFIG: cluster.kubeconfigPath });
        expect(code).toBe(3);
        expect(line).toMatch(/^asp: error: the NetworkPolicy allow-all-egress in namespace asp can select asp's pods and allows traffic/);
        expect(createdPods().length).toBe(pods);
      } finally {
        await fetch(`${policies}/allow-all-egress`, { method: 'DELETE', headers });
      }
    }, 60_000);

    it('a pod that never starts (no room on the cluster): exit 3 at ASP_K8S_START_TIMEOUT with its state, and Ctrl-C ends the wait at once (exit 130)', async () => {
      cluster.holdPods(true);
      try {
        const started = Date.now();
        const { code, line } = await failing([], { KUBECONFIG: cluster.kubeconfigPath, ASP_K8S_START_TIMEOUT: '3s' });
        expect(code).toBe(3);
        expect(line).toMatch(/^asp: error: pod asp-\S+ did not start within 3 s: phase Pending — check the cluster has room/);
        expect(Date.now() - started).toBeLessThan(30_000);
        expect(livePods()).toEqual([]);
        const id = `k8s-pending-${process.pid}`;
        const child = spawn(
          process.execPath,
          [path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs'), 'run', '--repo', repoWith({ 'README.md': 'x\n' }), '--id', id, '--step', 'a=true'],
          {
            env: { PATH: process.env.PATH, HOME: process.env.HOME, ASP_HOME: mkdtempSync(path.join(os.tmpdir(), 'asp-home-')), ...env(), ASP_K8S_START_TIMEOUT: '10m' },
            stdio: ['ignore', 'ignore', 'pipe'],
          },
        );
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
        const deadline = Date.now() + 30_000;
        while (!livePods().some((pod) => pod.name.includes(id)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        const interrupted = Date.now();
        child.kill('SIGINT');
        expect(await closed, stderr).toBe(130);
        expect(Date.now() - interrupted, stderr).toBeLessThan(15_000);
        expect(livePods().some((pod) => pod.name.includes(id))).toBe(false);
      } finally {
        cluster.holdPods(false);
      }
    }, 120_000);

    it('a namespace that does not exist: exit 2', async () => {
      expect(await failing(['--namespace', 'nowhere'], { KUBECONFIG: cluster.kubeconfigPath })).toEqual({
        code: 2,
        line: expect.stringMatching(/^asp: error: the namespace does not exist on .*: namespaces "nowhere" not found/),
      });
    }, 60_000);

    it('an image the cluster cannot pull ends the task as infrastructure (exit 3) at once, not at the start timeout', async () => {
      const started = Date.now();
      const { code, line } = await failing(['--image', 'registry.invalid/no-such-image:1'], { KUBECONFIG: cluster.kubeconfigPath, ASP_K8S_START_TIMEOUT: '10m' });
      expect(code).toBe(3);
      expect(line).toMatch(/^asp: error: the cluster cannot pull the image of task in pod asp-.* \((ErrImagePull|ImagePullBackOff)/);
      expect(Date.now() - started).toBeLessThan(60_000);
      expect(livePods()).toEqual([]);
    }, 120_000);

    it('bad names: a backend, a namespace, a start timeout', async () => {
      expect(await failing([], { ASP_BACKEND: 'nomad' })).toEqual({ code: 2, line: 'asp: error: ASP_BACKEND "nomad" is not a backend — use docker or k8s' });
      expect(await failing(['--backend', 'k9s'], {})).toEqual({ code: 2, line: 'asp: error: --backend "k9s" is not a backend — use docker or k8s' });
      expect(await failing(['--namespace', 'Bad_NS'], {})).toMatchObject({ code: 2, line: expect.stringMatching(/^asp: error: --namespace "Bad_NS" is not a namespace name/) });
      expect(await failing([], { ASP_K8S_START_TIMEOUT: 'soon' })).toMatchObject({ code: 2, line: expect.stringMatching(/ASP_K8S_START_TIMEOUT="soon" is not a duration/) });
    }, 60_000);
  });
});
