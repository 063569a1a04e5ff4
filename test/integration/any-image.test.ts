import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import type { TaskSpecInput } from '../../src/config/task-spec.js';
import { runtimeVersion } from '../../src/docker/runtime-volume.js';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { docker, dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { fetchBundle, gitIn, repoWith } from '../helpers/repos.js';
import { artifact, run, trace, workspaceDirs } from '../helpers/run.js';
import { asp } from '../helpers/cli.js';
import { ensureTestImage } from '../helpers/test-images.js';
import { ASP_STEP_ENV, expectHardenedStep, PROBE } from '../fixtures/sandbox-probe.js';

/** Everything this file makes itself (the one-file images, the container it copies busybox out of) carries this label, and goes in afterAll. */
const RUN_LABEL = `asp.test-run=any-image-${process.pid}-${Date.now()}`;

interface ImageCase {
  name: string;
  /** A test image of test/helpers/test-images.ts; none: asp's own image (no `image` in the spec). */
  kind: 'python' | 'busybox' | 'musl' | undefined;
  /** The shell asp runs steps with there: bash where the image has it, else its /bin/sh. */
  shell: RegExp;
  /** Whether the image has git on PATH, so that a step can commit by itself. */
  git: boolean;
}

const IMAGES: ImageCase[] = [
  { name: "asp's own image", kind: undefined, shell: /\/bash$/, git: true },
  { name: 'a python image with no bash, git or node and a hostile USER/WORKDIR', kind: 'python', shell: /\/dash$/, git: false },
  { name: 'a busybox image with no libc', kind: 'busybox', shell: /\/busybox$/, git: false },
  // Alpine's make-up: musl's loader and libc, a shell that loads them, no glibc file anywhere.
  { name: 'a musl image with no glibc, its shell linked against musl', kind: 'musl', shell: /^\/bin\/dash$/, git: false },
];

describe.skipIf(!dockerAvailable)('--image takes any image, against the real Docker engine', () => {
  const settings = testSettings();

  afterAll(async () => {
    // The leak check: nothing asp made for a task outlives the suite...
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    // ...and the only asp volumes left are runtime volumes: asp's shared object, of no task and no run.
    const volumes = (await docker.listVolumes([])).filter((volume) => volume.name.startsWith('asp-'));
    // The runtime of this build's asp image is among them: the tasks on the test images ran from it.
    expect(volumes.map((volume) => volume.name)).toContain(`asp-runtime-${runtimeVersion(imageContext().tag)}`);
    for (const volume of volumes) {
      expect(volume.name).toMatch(/^asp-runtime-[0-9a-f]{12}$/);
      expect(volume.labels).toMatchObject({ 'asp.kind': 'runtime', 'asp.runtime': volume.name.slice('asp-runtime-'.length) });
      expect(volume.labels).not.toHaveProperty('asp.managed');
    }
  });

  it('asp doctor reports the prepared runtime: its version, files and size, read from the manifest the packer wrote last', async () => {
    await run(settings, { repo: repoWith({ 'README.md': 'x\n' }), image: await ensureTestImage('busybox'), steps: [{ name: 'a', run: 'true' }] });
    const doctor = await asp(['doctor', '--json'], {});
    const check = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> }).checks.find((entry) => entry.name === 'runtime');
    const version = runtimeVersion(imageContext().tag);
    expect(check?.ok).toBe(true);
    expect(check?.detail).toMatch(new RegExp(`^asp-runtime-${version} prepared: version ${version}, x64, \\d+ files, \\d+(\\.\\d)? MiB`));
    // Reading the manifest took a container, created and never started: it is gone.
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    expect(execFileSync('docker', ['ps', '-aq', '--filter', 'label=asp.kind=runtime'], { encoding: 'utf8' }).trim()).toBe('');
  }, 120_000);

  describe.each(IMAGES)('on $name', (image) => {
    let tag: string | undefined;
    beforeAll(async () => {
      tag = image.kind ? await ensureTestImage(image.kind) : undefined;
    }, 300_000);
    /** The task on this image: asp's own one is the default, named by no `image` at all. */
    const on = (input: TaskSpecInput): TaskSpecInput => ({ ...input, ...(tag ? { image: tag } : {}) });

    it('runs a step as uid 1000 with no capabilities, no network, a read-only root and the pids limit, in /workspace/repo', async () => {
      const { result } = await run(settings, on({ repo: repoWith({ 'probe.sh': PROBE }), steps: [{ name: 'probe', run: '. ./probe.sh' }], limits: { pids: 64 } }));
      expect(result.exitCode, result.error ?? result.failedStep?.outputTail ?? '').toBe(0);
      if (tag) expect(result.image).toBe(tag);
      else expect(result.image).toMatch(/^asp-sandbox:[0-9a-f]{12}$/);
      const facts = keyValues(readFileSync(path.join(result.workspacePath, '.asp', 'hardening.txt'), 'utf8'));
      expectHardenedStep(facts);
      expect(facts.CapAmb).toBe('0000000000000000');
      expect(facts['write:/bin']).toBe('refused');
      expect(facts['write:/opt/asp']).toBe('refused');
      expect(facts['owner:/opt/asp']).toBe('0:0');
      // Not the image's USER or WORKDIR (the python image says 65534 and /srv): asp's.
      expect(facts.cwd).toBe('/workspace/repo');
      expect(facts.shell).toMatch(image.shell);
      // The runtime's libraries are for the runner's own programs: a step loads the image's.
      expect(facts.LD_LIBRARY_PATH).toBe('unset');
      expect(facts.ASP_RUNTIME).toBe('unset');
      const names = facts.envnames?.split(',').filter(Boolean);
      expect(names).toEqual(expect.arrayContaining(ASP_STEP_ENV));
      expect(names).not.toContain('GIT_EXEC_PATH');
      expect(facts.pids).toBe('64');
      expect(facts.fork).not.toBe('all-forked');
      // asp's own image carries the runner; any other runs it from the runtime volume, mounted read-only.
      if (image.kind) expect(facts['mount:/opt/asp']).toBe('ro');
      else expect(facts['mount:/opt/asp']).toBeUndefined();
      if (image.kind === 'python') {
        expect([facts['tool:bash'], facts['tool:git'], facts['tool:node'], facts['tool:python3']]).toEqual(['absent', 'absent', 'absent', 'present']);
        expect(facts.PYTHONDONTWRITEBYTECODE).toBe('1');
      }
    });

    it('brings an edit a step left uncommitted back as a commit on top of the base', async () => {
      const repo = repoWith({ 'README.md': 'old\n', 'src/a.txt': 'a\n' });
      const base = gitIn(repo, 'rev-parse', 'HEAD');
      const { result } = await run(settings, on({ repo, task: 'edit the readme', steps: [{ name: 'edit', run: 'echo new > README.md && echo b > src/b.txt' }] }));
      expect(result.exitCode, result.warnings.join('\n')).toBe(0);
      expect(result.change).toMatchObject({ branch: `asp/${result.taskId}`, base, commits: 1, filesChanged: 2, insertions: 2, deletions: 1 });
      const check = fetchBundle(repo, result);
      expect(execFileSync('git', ['-C', check, 'show', 'incoming:README.md']).toString()).toBe('new\n');
      expect(execFileSync('git', ['-C', check, 'show', 'incoming:src/b.txt']).toString()).toBe('b\n');
      expect(execFileSync('git', ['-C', check, 'rev-parse', 'incoming~1']).toString().trim()).toBe(base);
      expect(execFileSync('git', ['-C', check, 'log', '-1', '--format=%an <%ae>', 'incoming']).toString().trim()).toBe('asp <asp@sandbox.invalid>');
    });

    if (image.git) {
      it("keeps a step's own commit and commits what the next step left on top of it", async () => {
        const repo = repoWith({ 'README.md': 'old\n' });
        const base = gitIn(repo, 'rev-parse', 'HEAD');
        const { result } = await run(
          settings,
          on({
            repo,
            steps: [
              { name: 'commit', run: 'echo committed > README.md && git commit -qam "the step\'s own commit"' },
              { name: 'edit', run: 'echo uncommitted > NOTES.md' },
            ],
          }),
        );
        expect(result.exitCode, result.warnings.join('\n')).toBe(0);
        expect(result.change).toMatchObject({ base, commits: 2, filesChanged: 2 });
        const check = fetchBundle(repo, result);
        expect(execFileSync('git', ['-C', check, 'log', '--format=%s', `${base}..incoming`]).toString()).toMatch(/^asp: .+\nthe step's own commit\n$/);
        expect(execFileSync('git', ['-C', check, 'show', 'incoming:README.md']).toString()).toBe('committed\n');
        expect(execFileSync('git', ['-C', check, 'show', 'incoming:NOTES.md']).toString()).toBe('uncommitted\n');
      });
    }

    it('copies the files a step writes to $ASP_ARTIFACTS out to .asp/, and a symlink there not at all', async () => {
      const { result } = await run(
        settings,
        on({
          repo: repoWith({ 'README.md': 'x\n' }),
          steps: [{ name: 'write', run: 'echo fine > $ASP_ARTIFACTS/ok.txt; mkdir -p $ASP_ARTIFACTS/sub && echo deep > $ASP_ARTIFACTS/sub/deep.txt; ln -s /etc/passwd $ASP_ARTIFACTS/passwd' }],
        }),
      );
      expect(result.exitCode).toBe(0);
      const asp = path.join(result.workspacePath, '.asp');
      expect(readFileSync(path.join(asp, 'ok.txt'), 'utf8')).toBe('fine\n');
      expect(readFileSync(path.join(asp, 'sub', 'deep.txt'), 'utf8')).toBe('deep\n');
      expect(result.artifacts).toEqual(expect.arrayContaining(['ok.txt', 'sub/deep.txt', 'write.json']));
      // Neither the link nor what it names on the host: lstat sees nothing there.
      expect(() => lstatSync(path.join(asp, 'passwd'))).toThrow(/ENOENT/);
      expect(result.artifacts).not.toContain('passwd');
      expect(result.warnings.join('\n')).toMatch(/passwd \(symlink entries are not allowed\)/);
    });

    it('kills the container when a step passes its deadline: exit 124, nothing left', async () => {
      const started = Date.now();
      const { result } = await run(
        settings,
        on({
          repo: repoWith({ 'README.md': 'x\n' }),
          steps: [
            { name: 'slow', run: 'echo started; sleep 60', timeout: '2s' },
            { name: 'after', run: 'true' },
          ],
        }),
      );
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(result.status).toBe('timeout');
      expect(result.exitCode).toBe(124);
      expect(result.steps.map((step) => step.status)).toEqual(['timeout', 'skipped']);
      expect(result.failedStep).toMatchObject({ step: 'slow', status: 'timeout', outputTail: 'started\n' });
      expect(artifact(result, 'slow.json')).toMatchObject({ exitCode: 124, timedOut: true, reason: 'step "slow" passed its 2000 ms deadline' });
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    it('stops and cleans up when interrupted during a step: exit 130, nothing left', async () => {
      const controller = new AbortController();
      let printed = '';
      const started = Date.now();
      const { result } = await run(settings, on({ repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'wait', run: 'echo partial > $ASP_ARTIFACTS/partial.txt; echo started; sleep 30' }] }), {
        signal: controller.signal,
        // Interrupted once the step is seen running, not after a guessed delay.
        writeOutput: (text) => {
          printed += text;
          if (printed.includes('[wait] started')) controller.abort();
        },
      });
      expect(controller.signal.aborted).toBe(true);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(result.status).toBe('interrupted');
      expect(result.exitCode).toBe(130);
      expect(result.steps[0]).toMatchObject({ name: 'wait', status: 'interrupted' });
      expect(result.artifacts).toContain('partial.txt');
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });
  });

  describe('a real test suite on the python image', () => {
    let python: string;
    beforeAll(async () => {
      python = await ensureTestImage('python');
    }, 300_000);
    const project = {
      'greet.py': 'def greet(name):\n    return f"Hello, {name}!"\n',
      'test_greet.py': 'from greet import greet\n\n\ndef test_greets_by_name():\n    assert greet("py") == "Hello, py!"\n',
    };
    // No cache dir: a passing run must leave the tree as it found it.
    const pytest = { name: 'tests', run: 'python3 -m pytest -p no:cacheprovider' };

    it("passes with pytest, and leaves no __pycache__ behind (the image's PYTHONDONTWRITEBYTECODE reached the step)", async () => {
      const { result, output } = await run(settings, { repo: repoWith(project), image: python, steps: [pytest] });
      expect(result.exitCode, output).toBe(0);
      expect(result.status).toBe('passed');
      expect(output).toMatch(/\[tests\] .*1 passed/);
      expect(result.change).toBeNull();
      // The trace says which image ran, by its content-addressed id, whatever the tag names later.
      const id = execFileSync('docker', ['image', 'inspect', '--format', '{{.Id}}', python], { encoding: 'utf8' }).trim();
      expect(trace(result).trace.metadata).toMatchObject({ image: python, image_id: id });
    });

    it('fails the task (exit 1) when a test fails, naming the step and showing what pytest said', async () => {
      const failing = { ...project, 'test_shout.py': 'from greet import greet\n\n\ndef test_shouts():\n    assert greet("py") == "HELLO, PY!"\n' };
      const { result } = await run(settings, { repo: repoWith(failing), image: python, steps: [pytest, { name: 'after', run: 'true' }] });
      expect(result.status).toBe('failed');
      expect(result.exitCode).toBe(1);
      expect(result.steps.map((step) => [step.name, step.status, step.exitCode])).toEqual([
        ['tests', 'failed', 1],
        ['after', 'skipped', null],
      ]);
      expect(result.failedStep).toMatchObject({ step: 'tests', status: 'failed', exitCode: 1, reason: 'step tests exited 1' });
      expect(result.failedStep?.outputTail).toContain("AssertionError: assert 'Hello, py!' == 'HELLO, PY!'");
      expect(result.failedStep?.outputTail).toMatch(/1 failed, 1 passed/);
      expect(result.change).toBeNull();
    });
  });

  describe('bad input', () => {
    /** An image of one file, and that not a shell: `docker import` of a tar holding busybox as /bin/true-not-sh. */
    const noShell = `asp-test-no-shell:${process.pid}`;
    /** The same, the file named /bin/sh: busybox then is ash, with its builtins and no other program at all (no mkdir, cat, ...). */
    const onlySh = `asp-test-only-sh:${process.pid}`;
    /** busybox under its own name and nothing else: no /bin/sh, but a program a step can name with its arguments. */
    const onlyBusybox = `asp-test-only-busybox:${process.pid}`;
    /** busybox as /bin/sh, labelled as asp's own image would be (asp.image=sandbox), but without the runner in it. */
    const fakeAsp = `asp-test-fake-asp:${process.pid}`;
    beforeAll(async () => {
      const busybox = await ensureTestImage('busybox');
      const holder = execFileSync('docker', ['create', '--label', RUN_LABEL, busybox]).toString().trim();
      const binary = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-no-shell-')), 'busybox');
      try {
        execFileSync('docker', ['cp', `${holder}:/bin/busybox`, binary]);
      } finally {
        execFileSync('docker', ['rm', '-f', holder], { stdio: 'ignore' });
      }
      importImageOf(noShell, binary, 'bin/true-not-sh');
      importImageOf(onlySh, binary, 'bin/sh');
      importImageOf(onlyBusybox, binary, 'bin/busybox');
      importImageOf(fakeAsp, binary, 'bin/sh', ['LABEL asp.image=sandbox']);
    }, 300_000);
    afterAll(() => {
      for (const kind of ['images', 'ps -a'] as const) {
        const ids = execFileSync('docker', [...kind.split(' '), '-q', '--filter', `label=${RUN_LABEL}`])
          .toString()
          .split('\n')
          .filter(Boolean);
        for (const id of ids) execFileSync('docker', kind === 'images' ? ['rmi', '-f', id] : ['rm', '-f', id], { stdio: 'ignore' });
      }
    });

    it('an image with no shell runs a step given as a list of arguments, without a shell, and says which program is missing', async () => {
      const repo = repoWith({ 'README.md': 'old\n' });
      const { result, output } = await run(settings, {
        repo,
        image: onlyBusybox,
        steps: [
          { name: 'argv', run: ['/bin/busybox', 'echo', 'no shell; $HOME is not expanded'] },
          { name: 'missing', run: ['pytest', '-q'] },
        ],
      });
      expect(output).toContain('[argv] no shell; $HOME is not expanded\n');
      expect(result.steps.map((step) => [step.name, step.status, step.exitCode])).toEqual([
        ['argv', 'passed', 0],
        ['missing', 'failed', 127],
      ]);
      expect(result.failedStep?.reason).toBe('step missing exited 127: the image has no program pytest (looked for on its PATH)');
      // The trace shows the list as a shell would read it.
      expect(artifact(result, 'argv.json')).toMatchObject({ command: "/bin/busybox echo 'no shell; $HOME is not expanded'" });
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    it('an image built for another architecture: bad input (exit 2) naming both, before anything is made', async () => {
      const foreign = `asp-test-arm64:${process.pid}`;
      loadImageFor('arm64', foreign);
      const clean = testSettings();
      const error = await run(clean, { repo: repoWith({ 'README.md': 'x\n' }), image: foreign, steps: [{ name: 'a', run: 'true' }] }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(AspError);
      expect((error as AspError).code).toBe('BAD_INPUT');
      expect((error as AspError).message).toBe(`image ${foreign} is built for linux/arm64, the Docker daemon runs linux/amd64`);
      expect(workspaceDirs(clean)).toEqual([]);
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    it("an image labelled as asp's own but without the runner: the error says what failed to start and where to look, nothing is left", async () => {
      const error = await run(testSettings(), { repo: repoWith({ 'README.md': 'x\n' }), image: fakeAsp, steps: [{ name: 'a', run: 'true' }] }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(AspError);
      expect((error as AspError).code).toBe('PROTOCOL_MISMATCH');
      // tini's own words on why the runner did not start, not only an exit code.
      expect((error as AspError).message).toMatch(/^the sandbox exited with 127 before saying hello: .*exec node failed: No such file or directory/);
      expect((error as AspError).hint).toContain('asp doctor');
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    it('an image that is not there: IMAGE_UNAVAILABLE naming it, nothing made', async () => {
      const clean = testSettings();
      const error = await run(clean, { repo: repoWith({ 'README.md': 'x\n' }), image: 'asp-no-such-image:latest', steps: [{ name: 'a', run: 'true' }] }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(AspError);
      expect((error as AspError).code).toBe('IMAGE_UNAVAILABLE');
      expect((error as AspError).message).toContain('asp-no-such-image:latest is not present');
      expect(workspaceDirs(clean)).toEqual([]);
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    const noShellTask = () =>
      run(settings, {
        repo: repoWith({ 'README.md': 'x\n' }),
        image: noShell,
        steps: [
          { name: 'build', run: 'echo hello' },
          { name: 'after', run: 'true' },
        ],
      });

    it('an image with no shell at all: the step fails at once and says why, the task ends with exit 1, nothing is left', async () => {
      const started = Date.now();
      const { result } = await noShellTask();
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(result.status).toBe('failed');
      expect(result.exitCode).toBe(1);
      expect(result.steps.map((step) => [step.name, step.status])).toEqual([
        ['build', 'failed'],
        ['after', 'skipped'],
      ]);
      expect(result.failedStep).toMatchObject({ step: 'build', status: 'failed' });
      expect(result.failedStep?.outputTail).toBe('asp-sandbox: the image has no /bin/sh: a step given as a command line needs a POSIX shell in the image; give it as a list of arguments instead\n');
      expect(artifact(result, 'build.json')).toMatchObject({
        reason: 'the image has no /bin/sh: a step given as a command line needs a POSIX shell in the image; give it as a list of arguments instead',
      });
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    // The runner's own word reaches the one line a batch report or CI shows, not only the step record.
    it('an image with no shell at all: the one-line reason of the failed step says the image has no /bin/sh', async () => {
      const { result } = await noShellTask();
      expect(`${result.error ?? ''}\n${result.failedStep?.reason ?? ''}`).toMatch(/image has no \/bin\/sh/);
    });

    // 127 as a shell says of a command it cannot find; never 28, which means the step was stopped at the disk limit.
    it("an image with no shell at all: the step exits 127 (command not found), not the disk limit's 28", async () => {
      const { result } = await noShellTask();
      expect(result.failedStep?.exitCode).toBe(127);
    });

    // Every program the runner itself runs is the runtime's, mkdir for the bundle's directory too: nothing of the image's.
    it('an image with nothing but a /bin/sh: a change made with shell builtins still comes back as a commit', async () => {
      const repo = repoWith({ 'README.md': 'old\n' });
      const { result } = await run(settings, { repo, image: onlySh, steps: [{ name: 'edit', run: 'echo new > README.md' }] });
      expect(result.exitCode).toBe(0);
      expect(result.change, result.warnings.join('\n')).toMatchObject({ commits: 1, filesChanged: 1 });
      expect(result.warnings).toEqual([]);
      expect(execFileSync('git', ['-C', fetchBundle(repo, result), 'show', 'incoming:README.md']).toString()).toBe('new\n');
    });
  });
});

/**
 * `docker load`s an image whose config says it is for `arch` (`docker import --platform` is ignored by this Docker):
 * the save format by hand, one layer holding one file, labelled RUN_LABEL.
 */
function loadImageFor(arch: string, tag: string): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-foreign-image-'));
  mkdirSync(path.join(dir, 'root'));
  mkdirSync(path.join(dir, 'layer'));
  writeFileSync(path.join(dir, 'root', 'x'), 'x\n');
  execFileSync('tar', ['-C', path.join(dir, 'root'), '-cf', path.join(dir, 'layer', 'layer.tar'), '.']);
  const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
  const config = JSON.stringify({
    architecture: arch,
    os: 'linux',
    config: { Cmd: ['/x'], Labels: { [RUN_LABEL.split('=')[0] ?? RUN_LABEL]: RUN_LABEL.split('=')[1] ?? '' } },
    rootfs: { type: 'layers', diff_ids: [`sha256:${digest(path.join(dir, 'layer', 'layer.tar'))}`] },
  });
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
  writeFileSync(path.join(dir, configName), config);
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: ['layer/layer.tar'] }]));
  execFileSync('tar', ['-C', dir, '-cf', path.join(dir, 'image.tar'), 'manifest.json', configName, 'layer']);
  execFileSync('docker', ['load', '-i', path.join(dir, 'image.tar')], { stdio: 'ignore' });
}

/** `docker import`s an image (labelled RUN_LABEL) whose whole file system is `file` at `inside`, root's, mode 755. */
function importImageOf(tag: string, file: string, inside: string, changes: string[] = []): void {
  const root = mkdtempSync(path.join(os.tmpdir(), 'asp-image-root-'));
  mkdirSync(path.join(root, path.dirname(inside)), { recursive: true });
  copyFileSync(file, path.join(root, inside));
  chmodSync(path.join(root, inside), 0o755);
  const tar = execFileSync('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
  execFileSync('docker', ['import', '--change', `LABEL ${RUN_LABEL}`, ...changes.flatMap((change) => ['--change', change]), '-', tag], { input: tar, stdio: ['pipe', 'ignore', 'pipe'] });
}
