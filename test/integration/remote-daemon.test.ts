import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labelFilter } from '../../src/backend/ownership-labels.js';
import { DEFAULT_BASE_IMAGE, imageContext, packageRoot } from '../../src/docker/sandbox-image.js';
import { runtimeVersion } from '../../src/docker/runtime-volume.js';
import { asp } from '../helpers/cli.js';
import { dockerAvailable } from '../helpers/docker.js';
import { fetchBundle, gitIn, repoWith } from '../helpers/repos.js';
import { AspError } from '../../src/core/asp-error.js';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { run, workspaceDirs } from '../helpers/run.js';
import { testSettings } from '../helpers/docker.js';
import { canRunSecondDaemon, startSecondDaemon, type SecondDaemon } from '../helpers/second-daemon.js';
import { ensureTestImage } from '../helpers/test-images.js';

/**
 * Issue 16: the runtime reaches a daemon that does not share the host's file system. The daemon here is a second
 * dockerd on tcp://127.0.0.1 in a mount namespace where the temp directory (repositories, workspaces), the project
 * (asp's build context) and HOME are empty: anything asp bind-mounted from the host would arrive empty, so only
 * what goes over the Engine API (the image build context, the workspace archive, the runtime volume filled from
 * asp's image) can make a task pass there.
 */
describe.skipIf(!dockerAvailable || !canRunSecondDaemon)('a daemon that cannot see the host file system (tcp, its own mount namespace)', () => {
  let daemon: SecondDaemon;
  let python: string;
  let busybox: string;
  // A directory under another hidden one is hidden with it (and could not be mounted on once its parent is empty).
  const hidden = [...new Set([os.tmpdir(), path.dirname(packageRoot()), os.homedir()])].filter((dir, _, all) => !all.some((other) => other !== dir && dir.startsWith(other + path.sep)));
  const workspaces = () => mkdtempSync(path.join(os.tmpdir(), 'asp-remote-ws-'));
  const env = () => ({ ...daemon.env, ASP_WORKSPACES: workspaces() });

  beforeAll(async () => {
    [python, busybox] = await Promise.all([ensureTestImage('python'), ensureTestImage('busybox')]);
    daemon = await startSecondDaemon({ hide: hidden });
    // No registry: the base asp builds on, and the images the tasks name, are carried over as a user would.
    daemon.load([DEFAULT_BASE_IMAGE, python, busybox]);
  }, 300_000);

  afterAll(async () => {
    if (!daemon) return;
    try {
      // Nothing a task made outlives it on that daemon either; the runtime volume is asp's shared object, not a task's.
      const [containers, volumes] = await Promise.all([daemon.docker.listContainers(labelFilter()), daemon.docker.listVolumes(labelFilter())]);
      expect({ containers: containers.map((c) => c.name), volumes: volumes.map((v) => v.name) }).toEqual({ containers: [], volumes: [] });
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('the control: a directory of the host, bind-mounted there, arrives empty', () => {
    const repo = repoWith({ 'README.md': 'x\n' });
    expect(execFileSync('ls', ['-A', repo], { encoding: 'utf8' })).toContain('README.md');
    expect(daemon.cli(['run', '--rm', '--network', 'none', '-v', `${repo}:/r:ro`, busybox, 'ls', '-A', '/r'])).toBe('');
  });

  it('asp builds its image there, fills the runtime volume there, and a pytest suite on the python image passes with its change back as a commit', async () => {
    const repo = repoWith({
      'greet.py': 'def greet(name):\n    return f"Hello, {name}!"\n',
      'test_greet.py': 'from greet import greet\n\n\ndef test_greets():\n    assert greet("py") == "Hello, py!"\n',
    });
    const base = gitIn(repo, 'rev-parse', 'HEAD');
    const run = await asp(['run', '--repo', repo, '--image', python, '--json', '--step', 'tests=python3 -m pytest -p no:cacheprovider', '--step', 'edit=echo remote > NOTES.md'], env());
    expect(run.code, `${run.stderr}\n--- dockerd ---\n${daemon.log().slice(-3000)}`).toBe(0);
    const result = JSON.parse(run.stdout) as { status: string; workspacePath: string; taskId: string; change: { base: string; commits: number; filesChanged: number } | null };
    expect(result.status).toBe('passed');
    expect(result.change).toMatchObject({ base, commits: 1, filesChanged: 1 });
    const check = fetchBundle(repo, result);
    expect(execFileSync('git', ['-C', check, 'show', 'incoming:NOTES.md'], { encoding: 'utf8' })).toBe('remote\n');
    // asp's image was built on that daemon from the context sent over the API, and the runtime filled from it there.
    const tag = imageContext().tag;
    expect(daemon.cli(['image', 'inspect', '--format', '{{index .Config.Labels "asp.image"}}', tag])).toBe('sandbox');
    expect(daemon.cli(['volume', 'ls', '-q', '--filter', 'label=asp.kind=runtime'])).toBe(`asp-runtime-${runtimeVersion(tag)}`);
  }, 300_000);

  it('asp doctor against that daemon reports the runtime prepared there', async () => {
    const doctor = await asp(['doctor', '--json'], env());
    const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> }).checks;
    expect(checks.find((check) => check.name === 'runtime')).toMatchObject({ ok: true, detail: expect.stringMatching(/^asp-runtime-[0-9a-f]{12} prepared: version/) });
  }, 120_000);

  // Runs after the tests above: the runtime volume is there, and nobody else uses this daemon, so removing it hurts no other suite.
  describe('the runtime volume, as one process (a batch) sees it', () => {
    const volume = () => `asp-runtime-${runtimeVersion(imageContext().tag)}`;
    const task = () => ({ repo: repoWith({ 'README.md': 'x\n' }), image: busybox, steps: [{ name: 'a', run: 'echo ran > $ASP_ARTIFACTS/ran.txt' }] });

    it('asp reap removes the runtime of an older asp image, keeps the current one, and keeps an old one a container still mounts', async () => {
      const old = 'asp-runtime-0123456789ab';
      const mounted = 'asp-runtime-fedcba987654';
      for (const name of [old, mounted]) daemon.cli(['volume', 'create', '--label', `asp.runtime=${name.slice('asp-runtime-'.length)}`, '--label', 'asp.kind=runtime', name]);
      // Not asp's (no labels): a container of someone else's that mounts the old runtime, created and never started.
      const holder = daemon.cli(['create', '--network', 'none', '-v', `${mounted}:/x:ro`, busybox, 'true']);
      try {
        const dry = await asp(['reap', '--dry-run', '--json'], env());
        expect(dry.code, dry.stderr).toBe(0);
        expect(daemon.cli(['volume', 'ls', '-q', '--filter', 'label=asp.kind=runtime']).split('\n').sort()).toEqual([old, volume(), mounted].sort());
        const reaped = await asp(['reap'], env());
        expect(reaped.code, reaped.stderr).toBe(0);
        expect(reaped.stdout).toContain(`removed runtime volume ${old}: asp's image changed`);
        expect(reaped.stdout).not.toContain(mounted);
        expect(daemon.cli(['volume', 'ls', '-q', '--filter', 'label=asp.kind=runtime']).split('\n').sort()).toEqual([volume(), mounted].sort());
      } finally {
        daemon.cli(['rm', '-f', holder]);
        daemon.cli(['volume', 'rm', '-f', mounted]);
        daemon.cli(['volume', 'rm', '-f', old]);
      }
    }, 120_000);

    it('removed between two tasks of one process: the second task makes it again and passes', async () => {
      const backend = new DockerBackend(daemon.docker);
      const first = await run(testSettings(), task(), { backend });
      expect(first.result.exitCode, first.result.error ?? first.output).toBe(0);
      daemon.cli(['volume', 'rm', volume()]);
      const second = await run(testSettings(), task(), { backend });
      expect(second.result.exitCode, second.result.error ?? second.output).toBe(0);
      expect(second.result.artifacts).toContain('ran.txt');
      expect(daemon.cli(['volume', 'inspect', '--format', '{{index .Labels "asp.kind"}}', volume()])).toBe('runtime');
    }, 120_000);

    it("a volume of that name that is not asp's runtime (no asp labels): the task fails at once saying so, and the volume is left alone", async () => {
      daemon.cli(['volume', 'rm', volume()]);
      daemon.cli(['volume', 'create', volume()]);
      try {
        const settings = testSettings();
        const error = await run(settings, task(), { backend: new DockerBackend(daemon.docker) }).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error).toBeInstanceOf(AspError);
        expect((error as AspError).message).toBe(`volume ${volume()} is not asp's runtime (it has no asp.runtime=${runtimeVersion(imageContext().tag)} label)`);
        expect((error as AspError).hint).toBe(`remove it (docker volume rm ${volume()}) and asp makes its runtime again`);
        expect(daemon.cli(['volume', 'inspect', '--format', '{{json .Labels}}', volume()])).toMatch(/^(null|\{\})$/);
        expect(workspaceDirs(settings)).toEqual([]);
      } finally {
        daemon.cli(['volume', 'rm', volume()]);
      }
    }, 120_000);
  });
});
