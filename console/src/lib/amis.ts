// The AMI catalog: its four tabs and how images are searched and shown.
import type { DescribeImagesCommandInput, Image } from '@aws-sdk/client-ec2';
import { nameOf } from './tags';

export type CatalogTab = 'quickstart' | 'mine' | 'marketplace' | 'community';

export const CATALOG_TABS: { id: CatalogTab; label: string }[] = [
  { id: 'quickstart', label: 'Quick Start' },
  { id: 'mine', label: 'My AMIs' },
  { id: 'marketplace', label: 'Marketplace' },
  { id: 'community', label: 'Community' },
];

/** The DescribeImages request behind each tab. */
export function catalogQuery(tab: CatalogTab): DescribeImagesCommandInput {
  switch (tab) {
    case 'quickstart':
      return { Owners: ['amazon'] };
    case 'mine':
      return { Owners: ['self'] };
    case 'marketplace':
      return { Owners: ['aws-marketplace'] };
    case 'community':
      return { ExecutableUsers: ['all'], Filters: [{ Name: 'is-public', Values: ['true'] }] };
  }
}

/** Searches name, description, id, architecture, owner and Name tag; newest first. */
export function searchImages(images: Image[], text: string): Image[] {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  return images
    .filter((im) => {
      if (!words.length) return true;
      const hay = [im.ImageId, im.Name, im.Description, im.Architecture, im.ImageOwnerAlias, im.OwnerId, nameOf(im.Tags), im.PlatformDetails]
        .filter(Boolean)
        .join(' ')
        .toLowerCase();
      return words.every((w) => hay.includes(w));
    })
    .sort((a, b) => {
      const n = (a.Name ?? '').localeCompare(b.Name ?? '');
      const ta = a.CreationDate ? Date.parse(a.CreationDate) : 0;
      const tb = b.CreationDate ? Date.parse(b.CreationDate) : 0;
      return tb - ta || n;
    });
}

/** Whether the image can be launched now. */
export function isLaunchable(im: Image): boolean {
  return im.State === 'available';
}

/** The owner as people say it: the alias, "me", or the account id. */
export function ownerLabel(im: Image, myAccountId?: string): string {
  if (im.ImageOwnerAlias) return im.ImageOwnerAlias;
  if (myAccountId && im.OwnerId === myAccountId) return 'me';
  return im.OwnerId ?? '—';
}

/** A 12-digit account id, as ModifyImageAttribute takes it. */
export function isAccountId(s: string): boolean {
  return /^\d{12}$/.test(s.trim());
}
