import type { Image } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { CATALOG_TABS, catalogQuery, isAccountId, isLaunchable, ownerLabel, searchImages } from './amis';

describe('catalogQuery', () => {
  it('maps each tab to its owners', () => {
    expect(catalogQuery('quickstart')).toEqual({ Owners: ['amazon'] });
    expect(catalogQuery('mine')).toEqual({ Owners: ['self'] });
    expect(catalogQuery('marketplace')).toEqual({ Owners: ['aws-marketplace'] });
    expect(catalogQuery('community').ExecutableUsers).toEqual(['all']);
  });
  it('has the four tabs in AWS order', () => {
    expect(CATALOG_TABS.map((t) => t.label)).toEqual(['Quick Start', 'My AMIs', 'Marketplace', 'Community']);
  });
});

describe('searchImages', () => {
  const images: Image[] = [
    { ImageId: 'ami-1', Name: 'kiln-tiny-x86_64-2026', Architecture: 'x86_64', CreationDate: '2026-01-01T00:00:00Z' },
    { ImageId: 'ami-2', Name: 'kiln-tiny-arm64-2026', Architecture: 'arm64', CreationDate: '2026-02-01T00:00:00Z' },
    { ImageId: 'ami-3', Name: 'debian-12-amd64', Description: 'Debian 12 bookworm', Architecture: 'x86_64' },
  ];
  it('matches all words across fields, newest first', () => {
    expect(searchImages(images, 'kiln').map((i) => i.ImageId)).toEqual(['ami-2', 'ami-1']);
    expect(searchImages(images, 'x86_64').map((i) => i.ImageId)).toEqual(['ami-1', 'ami-3']);
    expect(searchImages(images, 'bookworm').map((i) => i.ImageId)).toEqual(['ami-3']);
    expect(searchImages(images, 'tiny arm64').map((i) => i.ImageId)).toEqual(['ami-2']);
    expect(searchImages(images, '')).toHaveLength(3);
  });
});

describe('image helpers', () => {
  it('launches only available images', () => {
    expect(isLaunchable({ State: 'available' })).toBe(true);
    expect(isLaunchable({ State: 'pending' })).toBe(false);
  });
  it('labels owners', () => {
    expect(ownerLabel({ ImageOwnerAlias: 'amazon', OwnerId: '1' })).toBe('amazon');
    expect(ownerLabel({ OwnerId: '123456789012' }, '123456789012')).toBe('me');
    expect(ownerLabel({ OwnerId: '210987654321' }, '123456789012')).toBe('210987654321');
  });
  it('checks account ids', () => {
    expect(isAccountId('123456789012')).toBe(true);
    expect(isAccountId('12345678901')).toBe(false);
    expect(isAccountId('12345678901a')).toBe(false);
  });
});
