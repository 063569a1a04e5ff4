import { describe, expect, it } from 'vitest';
import { FrameReader, MAX_FRAME_BYTES, type FrameType } from '../../src/cli/standby-wire.js';

function frame(type: string, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

describe('the standby wire (frames between asp run and a standby asp process)', () => {
  it('reads frames however the bytes are cut, in order, empty ones included', () => {
    const seen: Array<[FrameType, string]> = [];
    const reader = new FrameReader((type, payload) => seen.push([type, payload.toString()]));
    const bytes = Buffer.concat([frame('A', ''), frame('O', 'hello '), frame('E', 'wörld'), frame('X', '0')]);
    for (let offset = 0; offset < bytes.length; offset += 3) expect(reader.push(bytes.subarray(offset, offset + 3))).toBe(true);
    expect(seen).toEqual([
      ['A', ''],
      ['O', 'hello '],
      ['E', 'wörld'],
      ['X', '0'],
    ]);
  });

  it('stops at a frame of a type it does not know, or one too big, and reads nothing after', () => {
    const seen: string[] = [];
    const reader = new FrameReader((type) => seen.push(type));
    expect(reader.push(Buffer.concat([frame('O', 'x'), Buffer.from('GET / HTTP/1.0\r\n\r\n')]))).toBe(false);
    expect(reader.push(frame('X', '0'))).toBe(false);
    expect(seen).toEqual(['O']);

    const big = new FrameReader(() => seen.push('big'));
    const header = Buffer.alloc(5);
    header.write('O', 0, 'latin1');
    header.writeUInt32BE(MAX_FRAME_BYTES + 1, 1);
    expect(big.push(header)).toBe(false);
    expect(seen).toEqual(['O']);
  });
});
