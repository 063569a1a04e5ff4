import { AspError } from '../core/asp-error.js';
import type { Limits } from '../config/task-spec.js';
import { formatBytes } from '../config/units.js';
import type { EngineInfo } from './sandbox-backend.js';

/**
 * Checks a task's limits against the machine of the Docker daemon that will run it (which, with DOCKER_HOST, is
 * not this one). Docker refuses more CPUs than it has only when the container is created, as an infrastructure
 * error; and it takes a memory limit above the machine's memory without a word, which is no limit at all.
 * Both are the user's input to fix: exit 2, before anything is made.
 */
export function checkLimitsFit(limits: Limits, daemon: Pick<EngineInfo, 'cpus' | 'memoryBytes'>): void {
  if (daemon.cpus && limits.cpus > daemon.cpus) {
    throw new AspError('BAD_INPUT', `a CPU limit of ${limits.cpus} is more than the ${daemon.cpus} CPUs of the Docker daemon's machine`, `pass --cpus ${daemon.cpus} or less`);
  }
  if (daemon.memoryBytes && limits.memory > daemon.memoryBytes) {
    throw new AspError(
      'BAD_INPUT',
      `a memory limit of ${formatBytes(limits.memory)} is more than the ${formatBytes(daemon.memoryBytes)} of the Docker daemon's machine (it would limit nothing)`,
      `pass --memory ${Math.floor(daemon.memoryBytes / 1024 ** 3)}g or less`,
    );
  }
}
