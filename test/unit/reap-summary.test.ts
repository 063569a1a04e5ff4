import { describe, expect, it } from 'vitest';
import { describeReap } from '../../src/cli/reap-command.js';
import type { ReapReport } from '../../src/reaper/reap-report.js';

function report(skipped: ReapReport['skipped']): ReapReport {
  return { dryRun: false, all: false, olderThanMs: null, items: [], skipped, runtimes: [], docker: { ok: true } };
}

describe('the reap summary line', () => {
  it('says what it left alone as whole counts of objects', () => {
    const line = describeReap(report({ 'supervisor-alive': 2, kept: 1, 'awaiting-decision': 3, 'too-recent': 4, 'not-expired': 1, 'not-asp': 2 }));
    expect(line).toBe(
      'asp reap: nothing to reap; left alone: 2 objects of live runs, 1 object kept with --keep (asp reap --all takes them), 3 clones awaiting asp approve, ' +
        '4 objects newer than --older-than, 1 object of another host, not yet expired, 2 objects with damaged labels\n',
    );
  });

  it('speaks of one object of a live run in the singular', () => {
    expect(describeReap(report({ 'supervisor-alive': 1 }))).toBe('asp reap: nothing to reap; left alone: 1 object of a live run\n');
  });

  it('says nothing of what it left alone when it left nothing', () => {
    expect(describeReap(report({}))).toBe('asp reap: nothing to reap\n');
  });
});
