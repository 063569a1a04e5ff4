import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseTaskSpec } from '../../src/config/task-spec.js';
import { systemClock } from '../../src/core/clock.js';
import { openTaskEgress } from '../../src/supervisor/task-egress.js';
import { TraceRecorder } from '../../src/tracing/trace-recorder.js';

const SECRET = 'ghp_0123456789abcdefSECRET';

function taskEgress() {
  const trace = new TraceRecorder({ taskId: 't', runId: 'r', task: '', repo: '.', ref: undefined, workspacePath: '/tmp/x', limits: {} }, systemClock);
  const recorded: Array<Record<string, unknown>> = [];
  const warnings: string[] = [];
  const egress = openTaskEgress(parseTaskSpec({ repo: '.', network: { allow: ['registry.npmjs.org'] } }), {
    clock: systemClock,
    trace,
    record: (entry) => recorded.push(entry as Record<string, unknown>),
    warn: (message) => warnings.push(message),
    mask: (text) => text.split(SECRET).join('***'),
  });
  if (!egress) throw new Error('a task with an allowlist has egress');
  const relay = egress.relay();
  relay.attach(new PassThrough().resume());
  return { egress, relay, trace, recorded, warnings };
}

describe("a task's egress records", () => {
  it('mask the task secrets in what the sandbox named (a token in a host name never reaches events.jsonl or the trace)', () => {
    const { relay, trace, recorded } = taskEgress();
    relay.handle({ type: 'net.open', id: 'c1', step: 'leak', host: `${SECRET}.evil.example`, port: 443, via: 'connect' });
    expect(recorded).toHaveLength(1);
    expect(JSON.stringify(recorded)).not.toContain(SECRET);
    expect(recorded[0]).toMatchObject({ type: 'egress', host: '***.evil.example', outcome: 'refused', allowed: false });
    const document = trace.finish({ status: 'passed', exitCode: 0, durationMs: 1 });
    expect(JSON.stringify(document)).not.toContain(SECRET);
  });

  it('keep a span for the first 1000 connections and count the rest in one summary span, refusals included', () => {
    const { relay, trace, recorded, egress } = taskEgress();
    for (let index = 0; index < 1500; index += 1) relay.handle({ type: 'net.open', id: `c${index}`, step: 's', host: 'refused.example', port: 443, via: 'connect' });
    expect(recorded).toHaveLength(1500);
    expect(egress.summary()).toMatchObject({ connections: 1500, refused: 1500 });
    const document = trace.finish({ status: 'passed', exitCode: 0, durationMs: 1 });
    const spans = document.observations.filter((observation) => observation.metadata.kind === 'egress');
    expect(spans).toHaveLength(1000);
    const summary = document.observations.filter((observation) => observation.metadata.kind === 'egress-summary');
    expect(summary).toMatchObject([{ name: 'egress: 500 more connection(s)', level: 'WARNING', output: { refused: 500 } }]);
    // Finishing again (a later export) adds no second summary.
    expect(trace.finish({ status: 'passed', exitCode: 0, durationMs: 1 }).observations.filter((observation) => observation.metadata.kind === 'egress-summary')).toHaveLength(1);
  });
});
