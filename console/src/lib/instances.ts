// Instances as the tables and the dashboard see them.
import type { Instance, Reservation } from '@aws-sdk/client-ec2';
import { nameOf } from './tags';

export const INSTANCE_STATES = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'] as const;
export type InstanceStateName = (typeof INSTANCE_STATES)[number];

export function stateOf(i: Instance): string {
  return i.State?.Name ?? 'unknown';
}

/** All instances of DescribeInstances' reservations, newest launch first, then by id. */
export function flattenReservations(reservations: Reservation[] | undefined): Instance[] {
  const all = (reservations ?? []).flatMap((r) => r.Instances ?? []);
  return all.sort((a, b) => {
    const ta = a.LaunchTime ? new Date(a.LaunchTime).getTime() : 0;
    const tb = b.LaunchTime ? new Date(b.LaunchTime).getTime() : 0;
    if (ta !== tb) return tb - ta;
    return (a.InstanceId ?? '').localeCompare(b.InstanceId ?? '');
  });
}

/** Counts by state: every known state present (0 when none), plus any unknown ones. */
export function countByState(instances: Instance[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of INSTANCE_STATES) counts[s] = 0;
  for (const i of instances) {
    const s = stateOf(i);
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}

export interface InstanceFilter {
  text?: string;
  /** A state name, or 'active' (everything but terminated), or '' for all. */
  state?: string;
  /** An instance type, or '' for all. */
  type?: string;
  /** `key` (the tag is present) or `key=value` (it has that value); '' for all. */
  tag?: string;
}

/** A tag filter as typed: `key` or `key=value` (only the first `=` splits). */
export function parseTagFilter(text: string): { key: string; value?: string } | null {
  const t = text.trim();
  if (!t) return null;
  const eq = t.indexOf('=');
  return eq < 0 ? { key: t } : { key: t.slice(0, eq).trim(), value: t.slice(eq + 1).trim() };
}

/** The instance types present, sorted, for the type filter's choices. */
export function typesPresent(instances: Instance[]): string[] {
  return [...new Set(instances.map((i) => i.InstanceType ?? '').filter(Boolean))].sort();
}

/** The instances table's columns: key and header, and whether shown until chosen otherwise. */
export const INSTANCE_COLUMNS = [
  { key: 'name', header: 'Name', shown: true },
  { key: 'id', header: 'Instance ID', shown: true },
  { key: 'state', header: 'State', shown: true },
  { key: 'type', header: 'Type', shown: true },
  { key: 'ami', header: 'AMI', shown: true },
  { key: 'public', header: 'Public IP', shown: true },
  { key: 'private', header: 'Private IP', shown: true },
  { key: 'zone', header: 'Zone', shown: true },
  { key: 'launch', header: 'Launch time', shown: true },
  { key: 'key', header: 'Key pair', shown: false },
  { key: 'vpc', header: 'VPC', shown: false },
  { key: 'subnet', header: 'Subnet', shown: false },
  { key: 'groups', header: 'Security groups', shown: false },
  { key: 'arch', header: 'Architecture', shown: false },
  { key: 'dns', header: 'Public DNS', shown: false },
] as const;

export type InstanceColumn = (typeof INSTANCE_COLUMNS)[number]['key'];

/**
 * The chosen columns from what was saved (a JSON list of keys): unknown keys are
 * dropped, the order is the table's, and nothing usable saved means the defaults.
 * The identifying column (Instance ID) is always kept.
 */
export function chosenColumns(saved: string | null): InstanceColumn[] {
  const defaults = INSTANCE_COLUMNS.filter((c) => c.shown).map((c) => c.key);
  let keys: unknown;
  try {
    keys = saved ? JSON.parse(saved) : null;
  } catch {
    keys = null;
  }
  if (!Array.isArray(keys)) return defaults;
  const want = new Set(keys.filter((k): k is string => typeof k === 'string'));
  want.add('id');
  return INSTANCE_COLUMNS.map((c) => c.key).filter((k) => want.has(k));
}

/** Filters by state, type and tag, and by text matched against id, Name, type, AMI, IPs, zone and key. */
export function filterInstances(instances: Instance[], f: InstanceFilter): Instance[] {
  const words = (f.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  return instances.filter((i) => {
    const s = stateOf(i);
    if (f.state === 'active' && s === 'terminated') return false;
    if (f.state && f.state !== 'active' && s !== f.state) return false;
    if (f.type && i.InstanceType !== f.type) return false;
    const tag = parseTagFilter(f.tag ?? '');
    if (tag) {
      const t = (i.Tags ?? []).find((t) => t.Key === tag.key);
      if (!t || (tag.value !== undefined && t.Value !== tag.value)) return false;
    }
    if (words.length === 0) return true;
    const hay = [
      i.InstanceId,
      nameOf(i.Tags),
      i.InstanceType,
      i.ImageId,
      i.PublicIpAddress,
      i.PrivateIpAddress,
      i.Placement?.AvailabilityZone,
      i.KeyName,
      s,
      ...(i.Tags ?? []).map((t) => `${t.Key}=${t.Value}`),
    ]
      .filter(Boolean)
      .join(' ')
      .toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

export interface AllowedActions {
  start: boolean;
  stop: boolean;
  reboot: boolean;
  terminate: boolean;
  createImage: boolean;
  console: boolean;
  connect: boolean;
}

/** Which lifecycle actions make sense for the selected instances (all must allow it). */
export function allowedActions(selected: Instance[]): AllowedActions {
  const none = selected.length === 0;
  const all = (pred: (s: string) => boolean) => !none && selected.every((i) => pred(stateOf(i)));
  const one = selected.length === 1 ? stateOf(selected[0]) : '';
  return {
    start: all((s) => s === 'stopped'),
    stop: all((s) => s === 'running' || s === 'pending'),
    reboot: all((s) => s === 'running'),
    terminate: all((s) => s !== 'terminated' && s !== 'shutting-down'),
    createImage: one === 'running' || one === 'stopped',
    console: selected.length === 1 && one !== 'terminated',
    connect: one === 'running',
  };
}

/** The commands the Connect dialog shows. */
export function connectCommands(i: Instance, user = 'ec2-user'): { ssh: string | null; kiln: string } {
  const ip = i.PublicIpAddress;
  const key = i.KeyName ?? 'KEY';
  return {
    ssh: ip ? `ssh -i ${key}.pem ${user}@${ip}` : null,
    kiln: `kiln ssh ${i.InstanceId}`,
  };
}

/** A stable CSS class suffix for a state badge. */
export function stateClass(state: string): string {
  switch (state) {
    case 'running':
      return 'ok';
    case 'pending':
    case 'stopping':
    case 'shutting-down':
      return 'busy';
    case 'stopped':
      return 'idle';
    case 'terminated':
      return 'gone';
    default:
      return 'idle';
  }
}
