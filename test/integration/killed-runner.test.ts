import { afterAll, describe, expect, it } from 'vitest';
import { currentSupervisor, labelFilter, ownershipLabels } from '../../src/backend/ownership-labels.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { containerSpec } from '../../src/docker/container-spec.js';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { docker, dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';
import { run } from '../helpers/run.js';

const MIB = 1024 * 1024;

describe.skipIf(!dockerAvailable)('a runner killed with 137, against the real Docker engine', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('says "killed (SIGKILL)", not out of memory, for a sandbox killed from outside under a step', async () => {
    const id = `killed-${process.pid}-${Date.now()}`;
    const running = run(testSettings(), { id, repo: repoWith({ 'a.txt': 'a\n' }), steps: [{ name: 'wait', run: 'sleep 60' }] });
    const deadline = Date.now() + 60_000;
    let killed = false;
    while (!killed && Date.now() < deadline) {
      const [box] = await docker.listContainers([...labelFilter(), `asp.task=${id}`]);
      if (box?.state === 'running') {
        // Give the step a moment to start, so the runner is mid-step when the SIGKILL comes.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        await docker.kill(box.id);
        killed = true;
      } else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const { result } = await running;
    expect(killed).toBe(true);
    expect(result.warnings).toContain('the sandbox ended without reporting (exit 137: killed (SIGKILL))');
    expect(result.warnings.join('\n')).not.toContain('memory');
  }, 120_000);

  it("reads the engine's OOMKilled: true for a container the OOM killer struck, false for one killed with SIGKILL", async () => {
    const image = imageContext().tag;
    const make = async (name: string, script: string) => {
      const labels = ownershipLabels({ taskId: 'oom', runId: name, supervisor: currentSupervisor(), expiresAt: new Date(Date.now() + 600_000), keep: false });
      await docker.createVolume(name, labels);
      const spec = containerSpec({ name, image, volume: name, labels, limits: limitsSchema.parse({ memory: '32m' }), allowedEnv: {} });
      return docker.createContainer({
        ...spec,
        Entrypoint: ['/bin/sh'],
        Cmd: ['-c', script],
        OpenStdin: false,
        AttachStdin: false,
        HostConfig: { ...spec.HostConfig, Memory: 32 * MIB, MemorySwap: 32 * MIB },
      });
    };
    const stamp = `${process.pid}-${Date.now()}`;
    const names = [`asp-oom-${stamp}`, `asp-sigkill-${stamp}`];
    const ids: string[] = [];
    try {
      ids.push(await make(names[0] as string, 'x="$(head -c 400000000 /dev/zero | tr "\\000" a)"; echo survived'));
      ids.push(await make(names[1] as string, 'sleep 60'));
      const [oom, sigkill] = ids as [string, string];
      await docker.start(oom);
      await docker.start(sigkill);
      await docker.kill(sigkill);
      expect(await docker.wait(oom)).toBe(137);
      expect(await docker.wait(sigkill)).toBe(137);
      expect(await docker.oomKilled(oom)).toBe(true);
      expect(await docker.oomKilled(sigkill)).toBe(false);
    } finally {
      for (const id of ids) await docker.removeContainer(id);
      for (const name of names) await docker.removeVolume(name);
    }
  }, 120_000);
});
