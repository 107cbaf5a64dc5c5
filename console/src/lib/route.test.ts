import { describe, expect, it } from 'vitest';
import { href, parseHash } from './route';

describe('routes', () => {
  it('parses pages and parameters', () => {
    expect(parseHash('#/launch?ami=ami-123&x=1')).toEqual({ page: 'launch', params: { ami: 'ami-123', x: '1' } });
    expect(parseHash('#/security-groups')).toEqual({ page: 'security-groups', params: {} });
  });
  it('falls back to the dashboard', () => {
    expect(parseHash('').page).toBe('dashboard');
    expect(parseHash('#/nonsense').page).toBe('dashboard');
  });
  it('round-trips', () => {
    const h = href('amis', { tab: 'mine', q: 'kiln tiny', empty: '' });
    expect(h).toBe('#/amis?tab=mine&q=kiln+tiny');
    expect(parseHash(h)).toEqual({ page: 'amis', params: { tab: 'mine', q: 'kiln tiny' } });
  });
});
