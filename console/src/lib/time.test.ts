import { describe, expect, it } from 'vitest';
import { formatAgo, formatTime, isExpired } from './time';

describe('formatTime', () => {
  it('formats in the given zone', () => {
    expect(formatTime('2026-11-30T23:16:09Z', { timeZone: 'UTC' })).toBe('2026-11-30 23:16:09 UTC');
  });

  it('moves the wall clock into another zone, crossing the date', () => {
    const s = formatTime('2026-11-30T23:16:09Z', { timeZone: 'Asia/Tokyo' });
    expect(s.startsWith('2026-12-01 08:16:09')).toBe(true);
  });

  it('uses 24-hour time', () => {
    expect(formatTime(new Date(Date.UTC(2026, 0, 2, 0, 5, 7)), { timeZone: 'UTC' })).toBe('2026-01-02 00:05:07 UTC');
    expect(formatTime(new Date(Date.UTC(2026, 0, 2, 13, 5, 7)), { timeZone: 'UTC' })).toContain(' 13:05:07');
  });

  it('shows a dash for missing or invalid values', () => {
    expect(formatTime(undefined)).toBe('—');
    expect(formatTime('not a date')).toBe('—');
  });
});

describe('formatAgo', () => {
  const now = new Date('2026-11-30T12:00:00Z');
  it('scales its unit', () => {
    expect(formatAgo('2026-11-30T11:59:55Z', now)).toBe('5 s ago');
    expect(formatAgo('2026-11-30T11:30:00Z', now)).toBe('30 min ago');
    expect(formatAgo('2026-11-30T02:00:00Z', now)).toBe('10 h ago');
    expect(formatAgo('2026-11-20T12:00:00Z', now)).toBe('10 days ago');
  });
});

describe('isExpired', () => {
  const now = new Date('2026-11-30T12:00:00Z');
  it('compares with now', () => {
    expect(isExpired('2026-11-30T11:59:59Z', now)).toBe(true);
    expect(isExpired('2026-11-30T12:00:01Z', now)).toBe(false);
  });
  it('treats unknown expirations as live', () => {
    expect(isExpired(undefined, now)).toBe(false);
    expect(isExpired('garbage', now)).toBe(false);
  });
});
