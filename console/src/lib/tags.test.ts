import { describe, expect, it } from 'vitest';
import { formatTags, nameOf, parseTags, tagValue } from './tags';

describe('parseTags', () => {
  it('reads key=value lines and comma lists', () => {
    expect(parseTags('env=prod\nteam = web, owner=ann').tags).toEqual([
      { Key: 'env', Value: 'prod' },
      { Key: 'team', Value: 'web' },
      { Key: 'owner', Value: 'ann' },
    ]);
  });

  it('keeps = inside values and allows empty values', () => {
    const r = parseTags('expr=a=b\nflag');
    expect(r.errors).toEqual([]);
    expect(r.tags).toEqual([
      { Key: 'expr', Value: 'a=b' },
      { Key: 'flag', Value: '' },
    ]);
  });

  it('reports reserved, duplicate, empty and oversized keys', () => {
    const r = parseTags(`aws:x=1\nk=1\nk=2\n=v\n${'a'.repeat(129)}=1\nv=${'b'.repeat(257)}`);
    expect(r.tags).toEqual([{ Key: 'k', Value: '1' }]);
    expect(r.errors).toHaveLength(5);
    expect(r.errors.join(' ')).toMatch(/reserved/);
    expect(r.errors.join(' ')).toMatch(/duplicate/);
    expect(r.errors.join(' ')).toMatch(/needs a key/);
  });

  it('ignores blank lines', () => {
    expect(parseTags('\n\n  \n')).toEqual({ tags: [], errors: [] });
  });
});

describe('tag lookups', () => {
  const tags = [
    { Key: 'Name', Value: 'web-1' },
    { Key: 'env', Value: 'prod' },
  ];
  it('finds values', () => {
    expect(tagValue(tags, 'env')).toBe('prod');
    expect(tagValue(tags, 'missing')).toBeUndefined();
    expect(nameOf(tags)).toBe('web-1');
    expect(nameOf(undefined)).toBe('');
  });
  it('round-trips through the typed form', () => {
    expect(formatTags(tags)).toBe('env=prod\nName=web-1');
    expect(parseTags(formatTags(tags)).tags).toEqual([tags[1], tags[0]]);
  });
});
