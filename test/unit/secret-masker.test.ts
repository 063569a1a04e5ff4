import { describe, expect, it } from 'vitest';
import { SECRET_NAME, SecretMasker } from '../../src/protocol/secret-masker.js';

describe('secret masker', () => {
  it('masks every occurrence, longest secret first', () => {
    const masker = new SecretMasker(['hunter22', 'hunter22-extended']);
    expect(masker.mask('a hunter22-extended b hunter22 c')).toBe('a *** b *** c');
  });

  it('catches a secret split across chunks', () => {
    const masker = new SecretMasker(['s3cr3t-value']);
    const out = [masker.push('token: s3c'), masker.push('r3t-va'), masker.push('lue done\nnext s3'), masker.push('x'), masker.flush()].join('');
    expect(out).toBe('token: *** done\nnext s3x');
  });

  it('releases a held-back prefix at the end of the stream', () => {
    const masker = new SecretMasker(['abcdef']);
    expect(masker.push('xx abc')).toBe('xx ');
    expect(masker.flush()).toBe('abc');
  });

  it('ignores secrets too short to mask safely and passes text through untouched without secrets', () => {
    const masker = new SecretMasker(['ab', '']);
    expect(masker.active).toBe(false);
    expect(masker.push('ab ab')).toBe('ab ab');
  });

  it('knows which variable names hold secrets', () => {
    for (const name of ['GITHUB_TOKEN', 'NPM_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'OPENAI_API_KEY', 'DB_PASSWORD', 'MY_PRIVATE_KEY', 'BASIC_AUTH']) expect(name).toMatch(SECRET_NAME);
    for (const name of ['NODE_ENV', 'PATH', 'CI', 'LANG']) expect(name).not.toMatch(SECRET_NAME);
  });
});
