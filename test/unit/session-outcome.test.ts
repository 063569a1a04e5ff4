import { describe, expect, it } from 'vitest';
import { outcomeOf } from '../../src/supervisor/session-outcome.js';

describe('what a sandbox session’s end means for the verdict', () => {
  it('a runner ended by SIGTERM without reporting was stopped from outside (the engine shutting down): infrastructure, not the task’s failure', () => {
    expect(outcomeOf({ kind: 'exited', statusCode: 143, taskEnd: undefined })).toEqual({ status: 'error', exitCode: 3, error: expect.stringContaining('stopped from outside asp (SIGTERM') });
  });

  it('any other unreported exit stays the task’s failure; a reported end stands as reported', () => {
    expect(outcomeOf({ kind: 'exited', statusCode: 137, taskEnd: undefined })).toEqual({ status: 'failed', exitCode: 1, error: 'the sandbox exited with 137' });
    expect(outcomeOf({ kind: 'exited', statusCode: 1, taskEnd: { type: 'task.end', status: 'failed', exitCode: 1 } })).toEqual({ status: 'failed', exitCode: 1 });
    expect(outcomeOf({ kind: 'exited', statusCode: 0, taskEnd: { type: 'task.end', status: 'passed', exitCode: 0 } })).toEqual({ status: 'passed', exitCode: 0 });
  });
});
