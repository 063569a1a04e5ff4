import { EngineAdapter } from '../../src/docker/engine-adapter.js';
import { buildSandboxImage, imageContext } from '../../src/docker/sandbox-image.js';

/**
 * Builds the sandbox image once before the suites (when a daemon answers), so the first integration test
 * does not pay for it inside its own timeout. Needs `npm run build` (npm test runs it first).
 */
export default async function setup(): Promise<void> {
  const docker = EngineAdapter.fromEnvironment(process.env);
  const up = await docker.info().then(
    () => true,
    () => false,
  );
  if (!up) {
    process.stderr.write('test setup: no Docker daemon answers; the integration suites will be skipped (and .ci/run fails)\n');
    return;
  }
  const context = imageContext();
  if (!(await docker.imageExists(context.tag))) {
    process.stderr.write(`test setup: building ${context.tag}\n`);
    await buildSandboxImage(docker, context, () => {});
  }
}
