import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSettings, type Settings } from '../../src/config/settings.js';
import { EngineAdapter } from '../../src/docker/engine-adapter.js';
import { labelFilter } from '../../src/backend/ownership-labels.js';
import type { DockerPort } from '../../src/docker/port.js';

export const docker: DockerPort = EngineAdapter.fromEnvironment(process.env);

/** Integration suites skip only when no daemon answers; .ci/run fails the build when anything was skipped. */
export const dockerAvailable = await docker.info().then(
  () => true,
  () => false,
);

/** asp-labelled containers and volumes on the daemon right now: after a suite there must be none. */
export async function leftovers(): Promise<{ containers: string[]; volumes: string[] }> {
  const [containers, volumes] = await Promise.all([docker.listContainers(labelFilter()), docker.listVolumes(labelFilter())]);
  return { containers: containers.map((container) => container.name), volumes: volumes.map((volume) => volume.name) };
}

/** Settings for a test: a private workspace root and asp home, so suites never see each other's files. */
export function testSettings(overrides: Partial<Settings> = {}): Settings {
  const base = mkdtempSync(path.join(os.tmpdir(), 'asp-test-'));
  return {
    ...readSettings({ PATH: process.env.PATH, HOME: process.env.HOME }),
    workspacesRoot: path.join(base, 'workspaces'),
    home: path.join(base, 'home'),
    ...overrides,
  };
}
