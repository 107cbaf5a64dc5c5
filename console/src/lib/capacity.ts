// The capacity figures of the dashboard: Kiln's own DescribeAccountAttributes names.
import type { AccountAttribute } from '@aws-sdk/client-ec2';

/** What every account may ask: its vCPU quota in the region and its use of it. */
export const ACCOUNT_ATTRIBUTES = ['kiln:vcpu-limit', 'kiln:vcpus-in-use'];
/** What only the operator account may ask: the host's offer and use, all tenants together. */
export const HOST_ATTRIBUTES = [
  'kiln:host-vcpus',
  'kiln:host-vcpus-in-use',
  'kiln:host-memory-mib',
  'kiln:host-memory-mib-in-use',
  'kiln:host-instances',
];

export interface Capacity {
  vcpuLimit: number;
  vcpusInUse: number;
  /** Absent unless the caller is the operator. */
  host?: { vcpus: number; vcpusInUse: number; memoryMib: number; memoryMibInUse: number; instances: number };
}

/** The first value of each attribute, as a number (NaN when missing or not a number). */
function numbers(attrs: AccountAttribute[] | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const a of attrs ?? []) {
    const v = a.AttributeValues?.[0]?.AttributeValue;
    if (a.AttributeName && v !== undefined && v.trim() !== '') out.set(a.AttributeName, Number(v));
  }
  return out;
}

/** The capacity of the two answers; `host` is undefined when the host was not shown. */
export function parseCapacity(account: AccountAttribute[] | undefined, host: AccountAttribute[] | undefined): Capacity {
  const a = numbers(account);
  const h = numbers(host);
  const get = (m: Map<string, number>, k: string) => m.get(k) ?? NaN;
  return {
    vcpuLimit: get(a, 'kiln:vcpu-limit'),
    vcpusInUse: get(a, 'kiln:vcpus-in-use'),
    host: host
      ? {
          vcpus: get(h, 'kiln:host-vcpus'),
          vcpusInUse: get(h, 'kiln:host-vcpus-in-use'),
          memoryMib: get(h, 'kiln:host-memory-mib'),
          memoryMibInUse: get(h, 'kiln:host-memory-mib-in-use'),
          instances: get(h, 'kiln:host-instances'),
        }
      : undefined,
  };
}

/** Used as a share of total, 0–100, rounded; 0 when the total is unknown or zero. */
export function percentUsed(used: number, total: number): number {
  if (!Number.isFinite(used) || !Number.isFinite(total) || total <= 0) return 0;
  return Math.min(100, Math.max(0, Math.round((used / total) * 100)));
}

/** MiB as the dashboard shows it: GiB with one decimal from 1 GiB up. */
export function formatMib(mib: number): string {
  if (!Number.isFinite(mib)) return '—';
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib} MiB`;
}
