// Hash routes: #/instances, #/launch?ami=ami-123, #/amis?tab=mine.

export const PAGES = [
  'dashboard', 'instances', 'launch', 'templates', 'amis', 'keypairs', 'security-groups', 'volumes', 'snapshots', 'addresses', 'vpcs',
] as const;
export type Page = (typeof PAGES)[number] | 'signin';

export interface Route {
  page: Page;
  params: Record<string, string>;
}

export function parseHash(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  const [path, query = ''] = h.split('?', 2);
  const params: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) params[k] = v;
  const page = (PAGES as readonly string[]).includes(path) || path === 'signin' ? (path as Page) : 'dashboard';
  return { page, params };
}

export function href(page: Page, params: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const qs = q.toString();
  return `#/${page}${qs ? `?${qs}` : ''}`;
}
