import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../src/protocol/line-splitter.js';
import { encodeMessage, PROTOCOL_VERSION, type ProtocolMessage } from '../../src/protocol/messages.js';
import { parseProtocolLine } from '../../src/protocol/parse.js';

describe('task protocol', () => {
  const messages: ProtocolMessage[] = [
    { type: 'hello', protocolVersion: PROTOCOL_VERSION, runner: 'asp-sandbox/1' },
    { type: 'step.start', step: 'test', run: 'npm test', timeoutMs: 1000, at: '2026-01-01T00:00:00.000Z' },
    { type: 'step.log', step: 'test', stream: 'stderr', data: 'boom\n' },
    { type: 'step.end', step: 'test', exitCode: 1, durationMs: 12, timedOut: false, droppedBytes: 0 },
    { type: 'artifact', path: 'planning.json', sha256: 'a'.repeat(64), bytes: 3 },
    { type: 'generation', step: 'plan', model: 'gpt-x', usage: { input: 10, output: 5 }, costUsd: 0.01 },
    { type: 'generation', step: 'design_review_agent', agent: 'design_agent', model: 'gpt-x', usage: { total: 15 } },
    { type: 'model.request', id: 'm2', step: 'design_review_agent', agent: 'design_agent', body: { messages: [] } },
    { type: 'task.end', status: 'failed', exitCode: 1 },
    { type: 'warning', message: 'careful' },
    { type: 'warning', message: "the container engine's disk is full", fault: 'engine-disk-full' },
  ];

  it.each(messages.map((message) => [message.type, message]))('round-trips %s', (_type, message) => {
    const line = encodeMessage(message);
    expect(line.endsWith('\n')).toBe(true);
    expect(parseProtocolLine(line.trimEnd())).toEqual({ kind: 'message', message });
  });

  it.each([
    ['plain output', 'hello world', 'not JSON'],
    ['a JSON array', '[1,2]', 'not a JSON object'],
    ['an untagged event', '{"type":"task.end","status":"passed","exitCode":0}', 'missing "asp": 1 tag'],
    ['another protocol version', '{"asp":2,"type":"hello","protocolVersion":2,"runner":"x"}', 'missing "asp": 1 tag'],
    ['an unknown type', '{"asp":1,"type":"launch.missiles"}', 'type:'],
    ['a bad field', '{"asp":1,"type":"step.end","step":"t","exitCode":"zero","durationMs":1}', 'exitCode:'],
    ['a bad status', '{"asp":1,"type":"task.end","status":"great","exitCode":0}', 'status:'],
    ['a fault asp does not know', '{"asp":1,"type":"warning","message":"m","fault":"cosmic-rays"}', 'fault:'],
    ['a traversal-shaped step name', `{"asp":1,"type":"step.log","step":"${'x'.repeat(65)}","stream":"stdout","data":""}`, 'step:'],
    ['an agent name with spaces', '{"asp":1,"type":"model.request","id":"m1","step":"s","agent":"my agent","body":{}}', 'agent:'],
    ['an over-long agent name', `{"asp":1,"type":"model.request","id":"m1","step":"s","agent":"${'a'.repeat(65)}","body":{}}`, 'agent:'],
  ])('records %s as invalid instead of throwing', (_what, line, reason) => {
    const parsed = parseProtocolLine(line);
    expect(parsed.kind).toBe('invalid');
    if (parsed.kind === 'invalid') expect(parsed.reason).toContain(reason);
  });
});

describe('line splitter', () => {
  it('splits across chunks and keeps multi-byte characters whole', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter(
      100,
      (line) => lines.push(line),
      () => {},
    );
    const bytes = Buffer.from('héllo\nwor');
    splitter.push(bytes.subarray(0, 2));
    splitter.push(bytes.subarray(2));
    splitter.push(Buffer.from('ld\n'));
    splitter.push(Buffer.from('tail'));
    splitter.end();
    expect(lines).toEqual(['héllo', 'world', 'tail']);
  });

  it('drops an over-long line without buffering it, and goes on with the next', () => {
    const lines: string[] = [];
    const dropped: number[] = [];
    const splitter = new LineSplitter(
      10,
      (line) => lines.push(line),
      (bytes) => dropped.push(bytes),
    );
    splitter.push(Buffer.from('x'.repeat(8)));
    splitter.push(Buffer.from('x'.repeat(8)));
    splitter.push(Buffer.from('x'.repeat(8) + '\nok\n'));
    expect(dropped).toEqual([24]);
    expect(lines).toEqual(['ok']);
  });
});

describe('host → sandbox messages', () => {
  it('round-trips a model.response and a model.chunk, and the host parses a model.request', async () => {
    const { encodeHostMessage, parseHostLine } = await import('../../src/protocol/host-messages.js');
    const response = { type: 'model.response' as const, id: 'm1', status: 200, body: { ok: true } };
    const chunk = { type: 'model.chunk' as const, id: 'm1', data: { choices: [] } };
    expect(parseHostLine(encodeHostMessage(response).trimEnd())).toEqual(response);
    expect(parseHostLine(encodeHostMessage(chunk).trimEnd())).toEqual(chunk);
    const request = { type: 'model.request' as const, id: 'm1', step: 'plan', body: { messages: [] } };
    expect(parseProtocolLine(encodeMessage(request).trimEnd())).toEqual({ kind: 'message', message: request });
  });

  it('round-trips the env message a pod gets instead of Env in its spec', async () => {
    const { encodeHostMessage, parseHostLine } = await import('../../src/protocol/host-messages.js');
    const env = { type: 'env' as const, env: { API_TOKEN: 's3cret $(HOME)', EMPTY: '' } };
    expect(parseHostLine(encodeHostMessage(env).trimEnd())).toEqual(env);
  });

  it.each([
    ['an env message with a value that is not a string', '{"asp":1,"type":"env","env":{"A":1}}'],
    ['an env message with a name no shell could read', '{"asp":1,"type":"env","env":{"A=B":"x"}}'],
    ['an env message that is a list', '{"asp":1,"type":"env","env":["A"]}'],
    ['plain text', 'hello'],
    ['an untagged message', '{"type":"model.response","id":"m1","status":200}'],
    ['an unknown type', '{"asp":1,"type":"launch","id":"m1"}'],
    ['a status out of range', '{"asp":1,"type":"model.response","id":"m1","status":99}'],
    ['a missing id', '{"asp":1,"type":"model.chunk","data":{}}'],
    ['an array', '[1]'],
  ])('skips %s without throwing', async (_what, line) => {
    const { parseHostLine } = await import('../../src/protocol/host-messages.js');
    expect(parseHostLine(line)).toBeUndefined();
  });
});
