import os from 'node:os';
import path from 'node:path';

/** ASP_HOME, where asp keeps its state: ~/.asp unless set. Its own module, for the CLI's entry to read without settings. */
export function aspHome(env: NodeJS.ProcessEnv): string {
  return path.resolve(env.ASP_HOME || path.join(os.homedir(), '.asp'));
}
