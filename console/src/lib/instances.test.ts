import type { Instance } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import {
  allowedActions, chosenColumns, connectCommands, countByState, filterInstances, flattenReservations, parseTagFilter, typesPresent,
} from './instances';

function inst(id: string, state: string, extra: Partial<Instance> = {}): Instance {
  return { InstanceId: id, State: { Name: state as never }, ...extra };
}

describe('flattenReservations', () => {
  it('joins reservations, newest first', () => {
    const list = flattenReservations([
      { Instances: [inst('i-a', 'running', { LaunchTime: new Date('2026-01-01T00:00:00Z') })] },
      {
        Instances: [
          inst('i-c', 'running', { LaunchTime: new Date('2026-01-03T00:00:00Z') }),
          inst('i-b', 'running', { LaunchTime: new Date('2026-01-03T00:00:00Z') }),
        ],
      },
      {},
    ]);
    expect(list.map((i) => i.InstanceId)).toEqual(['i-b', 'i-c', 'i-a']);
  });
  it('accepts nothing', () => {
    expect(flattenReservations(undefined)).toEqual([]);
  });
});

describe('countByState', () => {
  it('counts every state, zero included', () => {
    const c = countByState([inst('i-1', 'running'), inst('i-2', 'running'), inst('i-3', 'stopped')]);
    expect(c).toEqual({ pending: 0, running: 2, stopping: 0, stopped: 1, 'shutting-down': 0, terminated: 0 });
  });
});

describe('filterInstances', () => {
  const list = [
    inst('i-0aa', 'running', { InstanceType: 't3.micro', Tags: [{ Key: 'Name', Value: 'web' }], PublicIpAddress: '198.51.100.7' }),
    inst('i-0bb', 'stopped', { InstanceType: 'm5.large', Tags: [{ Key: 'Name', Value: 'db' }, { Key: 'env', Value: 'prod' }] }),
    inst('i-0cc', 'terminated', { InstanceType: 't3.micro' }),
  ];
  const ids = (l: Instance[]) => l.map((i) => i.InstanceId);

  it('filters by state, with active meaning not terminated', () => {
    expect(ids(filterInstances(list, { state: 'stopped' }))).toEqual(['i-0bb']);
    expect(ids(filterInstances(list, { state: 'active' }))).toEqual(['i-0aa', 'i-0bb']);
    expect(ids(filterInstances(list, { state: '' }))).toHaveLength(3);
  });

  it('matches every word against name, type, IP and tags', () => {
    expect(ids(filterInstances(list, { text: 'WEB' }))).toEqual(['i-0aa']);
    expect(ids(filterInstances(list, { text: 't3.micro' }))).toEqual(['i-0aa', 'i-0cc']);
    expect(ids(filterInstances(list, { text: '198.51' }))).toEqual(['i-0aa']);
    expect(ids(filterInstances(list, { text: 'env=prod' }))).toEqual(['i-0bb']);
    expect(ids(filterInstances(list, { text: 't3.micro web' }))).toEqual(['i-0aa']);
    expect(ids(filterInstances(list, { text: 't3.micro', state: 'active' }))).toEqual(['i-0aa']);
  });

  it('filters by type and by tag key or key=value', () => {
    expect(ids(filterInstances(list, { type: 'm5.large' }))).toEqual(['i-0bb']);
    expect(ids(filterInstances(list, { type: 't3.micro', state: 'active' }))).toEqual(['i-0aa']);
    expect(ids(filterInstances(list, { tag: 'env' }))).toEqual(['i-0bb']);
    expect(ids(filterInstances(list, { tag: 'env=prod' }))).toEqual(['i-0bb']);
    expect(ids(filterInstances(list, { tag: 'env=dev' }))).toEqual([]);
    expect(ids(filterInstances(list, { tag: 'Name=web' }))).toEqual(['i-0aa']);
    expect(ids(filterInstances(list, { tag: '  ' }))).toHaveLength(3);
  });

  it('lists the types present for the filter', () => {
    expect(typesPresent(list)).toEqual(['m5.large', 't3.micro']);
  });
});

describe('parseTagFilter', () => {
  it('splits on the first equals sign', () => {
    expect(parseTagFilter('')).toBeNull();
    expect(parseTagFilter(' env ')).toEqual({ key: 'env' });
    expect(parseTagFilter('env = prod')).toEqual({ key: 'env', value: 'prod' });
    expect(parseTagFilter('url=a=b')).toEqual({ key: 'url', value: 'a=b' });
    expect(parseTagFilter('env=')).toEqual({ key: 'env', value: '' });
  });
});

describe('chosenColumns', () => {
  it('falls back to the defaults for nothing or garbage saved', () => {
    const defaults = ['name', 'id', 'state', 'type', 'ami', 'public', 'private', 'zone', 'launch'];
    expect(chosenColumns(null)).toEqual(defaults);
    expect(chosenColumns('not json')).toEqual(defaults);
    expect(chosenColumns('{"a":1}')).toEqual(defaults);
  });
  it("keeps known keys in the table's order and always the instance ID", () => {
    expect(chosenColumns('["vpc","state","bogus",3]')).toEqual(['id', 'state', 'vpc']);
    expect(chosenColumns('[]')).toEqual(['id']);
  });
});

describe('allowedActions', () => {
  it('allows nothing without a selection', () => {
    expect(Object.values(allowedActions([])).some(Boolean)).toBe(false);
  });
  it('follows the state of a running instance', () => {
    expect(allowedActions([inst('i-1', 'running')])).toEqual({
      start: false, stop: true, reboot: true, terminate: true, createImage: true, console: true, connect: true,
    });
  });
  it('requires every selected instance to allow the action', () => {
    const a = allowedActions([inst('i-1', 'running'), inst('i-2', 'stopped')]);
    expect(a.start).toBe(false);
    expect(a.stop).toBe(false);
    expect(a.terminate).toBe(true);
    expect(a.createImage).toBe(false);
  });
  it('allows nothing but viewing for terminated or shutting-down instances', () => {
    expect(allowedActions([inst('i-1', 'shutting-down')]).terminate).toBe(false);
    expect(allowedActions([inst('i-1', 'terminated')]).console).toBe(false);
  });
});

describe('connectCommands', () => {
  it('uses the key name and public address', () => {
    expect(connectCommands(inst('i-1', 'running', { KeyName: 'mykey', PublicIpAddress: '203.0.113.5' }))).toEqual({
      ssh: 'ssh -i mykey.pem ec2-user@203.0.113.5',
      kiln: 'kiln ssh i-1',
    });
  });
  it('has no ssh line without a public address', () => {
    expect(connectCommands(inst('i-1', 'running')).ssh).toBeNull();
  });
});
