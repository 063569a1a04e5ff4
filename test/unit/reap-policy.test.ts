import { describe, expect, it } from 'vitest';
import type { Ownership, SupervisorIdentity } from '../../src/backend/ownership-labels.js';
import { judge, judgePrune, judgeWorkspace, type Liveness, type ReapPolicy } from '../../src/reaper/reap-policy.js';
import type { OwnerRecord } from '../../src/workspace/host-workspace.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const LIVE_PID = 100;
/** On host "box" pid 100 lives and every other pid is gone; other hosts cannot be checked. */
const liveness: Liveness = (identity: SupervisorIdentity) => (identity.host !== 'box' ? 'other-host' : identity.pid === LIVE_PID ? 'alive' : 'dead');
const policy = (overrides: Partial<ReapPolicy> = {}): ReapPolicy => ({ now: NOW, liveness, all: false, olderThanMs: undefined, ...overrides });
const hoursAgo = (hours: number) => new Date(NOW.getTime() - hours * 3_600_000);

function owner(overrides: Partial<Ownership> & { pid?: number; host?: string } = {}): Ownership {
  const { pid = 200, host = 'box', ...rest } = overrides;
  return { taskId: 't', runId: 'r', supervisor: { host, pid, startTicks: 5 }, expiresAt: hoursAgo(-1), keep: false, ...rest };
}

function record(overrides: Partial<OwnerRecord> = {}): OwnerRecord {
  return {
    taskId: 't',
    runId: 'r',
    supervisor: 'box/200/5',
    expiresAt: hoursAgo(-1).toISOString(),
    keep: false,
    status: 'passed',
    createdAt: hoursAgo(2).toISOString(),
    finishedAt: hoursAgo(1).toISOString(),
    ...overrides,
  };
}

describe('reaper decisions', () => {
  it('leaves alone what asp does not own (no or damaged labels)', () => {
    expect(judge(undefined, hoursAgo(100), policy({ all: true }))).toEqual({ reap: false, reason: 'not-asp' });
  });

  it('takes what a dead supervisor on this host left', () => {
    expect(judge(owner(), hoursAgo(1), policy())).toEqual({ reap: true, reason: 'supervisor-gone' });
  });

  it("never takes a live supervisor's objects, not even past expiry or with --all", () => {
    const live = owner({ pid: LIVE_PID, expiresAt: hoursAgo(5) });
    expect(judge(live, hoursAgo(10), policy({ all: true, olderThanMs: 0 }))).toEqual({ reap: false, reason: 'supervisor-alive' });
  });

  it("judges another host's objects by expiry alone", () => {
    expect(judge(owner({ host: 'elsewhere' }), hoursAgo(1), policy())).toEqual({ reap: false, reason: 'not-expired' });
    expect(judge(owner({ host: 'elsewhere', expiresAt: hoursAgo(0.5) }), hoursAgo(1), policy())).toEqual({ reap: true, reason: 'expired' });
    expect(judge(owner({ host: 'elsewhere', expiresAt: NOW }), hoursAgo(1), policy())).toEqual({ reap: true, reason: 'expired' });
  });

  it('takes kept objects only with --all, and then only dead ones', () => {
    expect(judge(owner({ keep: true }), hoursAgo(1), policy())).toEqual({ reap: false, reason: 'kept' });
    expect(judge(owner({ keep: true }), hoursAgo(1), policy({ all: true }))).toEqual({ reap: true, reason: 'supervisor-gone' });
    expect(judge(owner({ keep: true, host: 'elsewhere' }), hoursAgo(1), policy({ all: true }))).toEqual({ reap: false, reason: 'not-expired' });
  });

  it('with --older-than, takes only dead objects created at least that long ago', () => {
    const hour = 3_600_000;
    expect(judge(owner(), hoursAgo(0.5), policy({ olderThanMs: hour }))).toEqual({ reap: false, reason: 'too-recent' });
    expect(judge(owner(), hoursAgo(1), policy({ olderThanMs: hour }))).toEqual({ reap: true, reason: 'supervisor-gone' });
    // An age the daemon did not report is not old enough: --older-than promises not to touch anything newer.
    expect(judge(owner(), undefined, policy({ olderThanMs: hour }))).toEqual({ reap: false, reason: 'too-recent' });
    expect(judge(owner({ pid: LIVE_PID }), hoursAgo(100), policy({ olderThanMs: hour }))).toEqual({ reap: false, reason: 'supervisor-alive' });
  });
});

describe('reaper decisions for host dirs', () => {
  it('removes the clone of a run abandoned mid-task and marks it', () => {
    expect(judgeWorkspace(record({ status: 'running', finishedAt: undefined }), { hasClone: true, awaitingDecision: false }, policy())).toEqual({
      act: true,
      reason: 'supervisor-gone',
      abandon: true,
      removeClone: true,
      release: false,
    });
  });

  it('finishes the cleanup of a finished run that left its clone', () => {
    expect(judgeWorkspace(record(), { hasClone: true, awaitingDecision: false }, policy())).toMatchObject({ act: true, abandon: false, removeClone: true });
  });

  it('has nothing to do for a finished run without a clone', () => {
    expect(judgeWorkspace(record(), { hasClone: false, awaitingDecision: false }, policy())).toEqual({ act: false, reason: 'nothing-left' });
  });

  it('keeps a kept clone unless --all, which releases it to retention', () => {
    expect(judgeWorkspace(record({ keep: true }), { hasClone: true, awaitingDecision: false }, policy())).toEqual({ act: false, reason: 'kept' });
    expect(judgeWorkspace(record({ keep: true }), { hasClone: true, awaitingDecision: false }, policy({ all: true }))).toMatchObject({ act: true, removeClone: true, release: true });
  });

  it('keeps a clone awaiting asp approve (HITL gate, or a failed push) unless --all', () => {
    const waiting = record({ status: 'awaiting_approval' });
    expect(judgeWorkspace(waiting, { hasClone: true, awaitingDecision: true }, policy())).toEqual({ act: false, reason: 'awaiting-decision' });
    expect(judgeWorkspace(waiting, { hasClone: true, awaitingDecision: true }, policy({ all: true }))).toMatchObject({ act: true, removeClone: true });
    // Abandoned mid-task, it never reached the gate: nothing is waiting for its clone.
    expect(judgeWorkspace(record({ status: 'running' }), { hasClone: true, awaitingDecision: true }, policy())).toMatchObject({ act: true, abandon: true });
  });

  it("leaves a live run's dir alone", () => {
    expect(judgeWorkspace(record({ status: 'running', supervisor: `box/${LIVE_PID}/5` }), { hasClone: true, awaitingDecision: false }, policy({ all: true }))).toEqual({
      act: false,
      reason: 'supervisor-alive',
    });
  });
});

describe('retention decisions', () => {
  const week = 7 * 86_400_000;
  const retention = (overrides: Partial<Parameters<typeof judgePrune>[2]> = {}) => ({ now: NOW, liveness, olderThanMs: week, all: false, ...overrides });

  it('prunes a task that finished longer ago than the retention period, counted from its end', () => {
    expect(judgePrune(record({ createdAt: hoursAgo(24 * 9).toISOString(), finishedAt: hoursAgo(24 * 8).toISOString() }), false, retention())).toEqual({ prune: true, ageMs: 8 * 86_400_000 });
    expect(judgePrune(record({ createdAt: hoursAgo(24 * 9).toISOString(), finishedAt: hoursAgo(24 * 6).toISOString() }), false, retention())).toEqual({ prune: false, reason: 'too-recent' });
  });

  it('never prunes a kept task unless asked with --all', () => {
    const old = record({ keep: true, finishedAt: hoursAgo(24 * 30).toISOString() });
    expect(judgePrune(old, false, retention())).toEqual({ prune: false, reason: 'kept' });
    expect(judgePrune(old, false, retention({ all: true }))).toMatchObject({ prune: true });
  });

  it('never prunes a task awaiting a decision unless asked with --all', () => {
    const waiting = record({ status: 'awaiting_approval', finishedAt: hoursAgo(24 * 30).toISOString() });
    expect(judgePrune(waiting, true, retention())).toEqual({ prune: false, reason: 'awaiting-decision' });
    expect(judgePrune(waiting, true, retention({ all: true }))).toMatchObject({ prune: true });
  });

  it('never prunes a task that may still be running', () => {
    const running = { status: 'running' as const, finishedAt: undefined, createdAt: hoursAgo(24 * 30).toISOString() };
    expect(judgePrune(record({ ...running, supervisor: `box/${LIVE_PID}/5` }), false, retention({ olderThanMs: 0 }))).toEqual({ prune: false, reason: 'running' });
    expect(judgePrune(record({ ...running, supervisor: 'elsewhere/1/1', expiresAt: hoursAgo(-1).toISOString() }), false, retention({ olderThanMs: 0 }))).toEqual({ prune: false, reason: 'running' });
    // Its supervisor is gone: it was abandoned, and ages from its start.
    expect(judgePrune(record(running), false, retention())).toMatchObject({ prune: true });
  });
});
