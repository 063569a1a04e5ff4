/**
 * The phases after a sandbox session, loaded apart (run-task.ts imports them while the sandbox starts, when the
 * host only waits): `asp run` does not pay for the trace's publication, the test reports' parsers, the change
 * bundle's checks or the clean-room check at start-up.
 */
export { CHECK_STEP_PREFIX, runCheck } from './check.js';
export { collect } from './collect.js';
export { finishTask } from './finish-task.js';
export { recordTrace } from './record-trace.js';
