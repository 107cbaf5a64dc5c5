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
}

/** Filters by state and by text matched against id, Name, type, AMI, IPs, zone and key. */
export function filterInstances(instances: Instance[], f: InstanceFilter): Instance[] {
  const words = (f.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  return instances.filter((i) => {
    const s = stateOf(i);
    if (f.state === 'active' && s === 'terminated') return false;
    if (f.state && f.state !== 'active' && s !== f.state) return false;
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
