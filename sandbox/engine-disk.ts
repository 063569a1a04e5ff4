import { statfs } from 'node:fs/promises';
import { SANDBOX_WORKSPACE, type WarningMessage } from '../src/protocol/messages.js';

/** Below this much free space where the workspace lives, the engine's disk is taken for full. */
export const ENGINE_DISK_SLACK_BYTES = 1024 * 1024;

const NO_SPACE = /No space left on device|ENOSPC/;

/**
 * The warning that tells the host the container engine's disk is full (`fault: 'engine-disk-full'`, which makes the
 * task an infrastructure error, retried by a batch, never the task's verdict), or undefined when it is not.
 *
 * The workspace is a volume on the engine's disk, shared with everything else the engine stores: the runner asks
 * that file system how much is free. A step that fills its own `--disk` limit is stopped by the watchdog first and
 * stays the task's failure. `failure` is the text of what the runner itself failed to do (unpack the workspace,
 * bundle the changes): ENOSPC named there is the engine's disk too, even if the failed write gave its space back. A
 * step's own output is never read for this: a step cannot talk its way into a retry.
 */
export async function engineDiskFull(during: string, failure?: string): Promise<WarningMessage | undefined> {
  const info = await statfs(SANDBOX_WORKSPACE).catch(() => undefined);
  const free = info ? info.bavail * info.bsize : undefined;
  const full = (free !== undefined && free < ENGINE_DISK_SLACK_BYTES) || (failure !== undefined && NO_SPACE.test(failure));
  if (!full) return undefined;
  const room = free === undefined ? '' : ` (${free} bytes free where the workspace lives)`;
  return {
    type: 'warning',
    fault: 'engine-disk-full',
    message: `the container engine's disk is full ${during}${room}: free space on the engine (docker system df; docker system prune) and run the task again`,
  };
}
