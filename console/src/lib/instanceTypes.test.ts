import { describe, expect, it } from 'vitest';
import { chooseCompatible, filterTypes, formatMemory, sortTypes, toTypeRow, type TypeRow } from './instanceTypes';

const row = (name: string, vcpus: number, memoryMiB: number, architectures: string[]): TypeRow => ({
  name, vcpus, memoryMiB, architectures, currentGeneration: true,
});

const rows = [
  row('t3.micro', 2, 1024, ['x86_64']),
  row('t4g.micro', 2, 1024, ['arm64']),
  row('t2.micro', 1, 1024, ['i386', 'x86_64']),
  row('m5.2xlarge', 8, 32768, ['x86_64']),
];

describe('toTypeRow', () => {
  it('reads DescribeInstanceTypes fields', () => {
    expect(
      toTypeRow({
        InstanceType: 't3.micro',
        VCpuInfo: { DefaultVCpus: 2 },
        MemoryInfo: { SizeInMiB: 1024 },
        ProcessorInfo: { SupportedArchitectures: ['x86_64'] },
        CurrentGeneration: true,
      }),
    ).toEqual(row('t3.micro', 2, 1024, ['x86_64']));
  });
});

describe('chooseCompatible', () => {
  it('disables types without the AMI architecture and says why', () => {
    const c = chooseCompatible(rows, 'arm64');
    expect(c.filter((r) => r.compatible).map((r) => r.name)).toEqual(['t4g.micro']);
    expect(c.find((r) => r.name === 't3.micro')?.reason).toBe('Supports x86_64; the AMI is arm64');
  });
  it('lets i386 AMIs run only on types that list i386', () => {
    expect(chooseCompatible(rows, 'i386').filter((r) => r.compatible).map((r) => r.name)).toEqual(['t2.micro']);
  });
  it('enables everything when no AMI is chosen', () => {
    expect(chooseCompatible(rows, undefined).every((r) => r.compatible)).toBe(true);
  });
});

describe('filterTypes', () => {
  const c = chooseCompatible(rows, 'x86_64');
  it('filters by text, vCPUs, memory and compatibility', () => {
    expect(filterTypes(c, { text: 'MICRO' }).map((r) => r.name)).toEqual(['t3.micro', 't4g.micro', 't2.micro']);
    expect(filterTypes(c, { minVcpus: 2, minMemoryGiB: 4 }).map((r) => r.name)).toEqual(['m5.2xlarge']);
    expect(filterTypes(c, { text: 'micro', compatibleOnly: true }).map((r) => r.name)).toEqual(['t3.micro', 't2.micro']);
  });
});

describe('sortTypes', () => {
  it('orders families naturally and sizes by size', () => {
    const names = sortTypes([
      row('t3.2xlarge', 8, 0, []), row('t3.micro', 2, 0, []), row('t3.xlarge', 4, 0, []),
      row('t3.nano', 2, 0, []), row('m5.large', 2, 0, []), row('t3.large', 2, 0, []), row('t3.12xlarge', 48, 0, []),
    ]).map((r) => r.name);
    expect(names).toEqual(['m5.large', 't3.nano', 't3.micro', 't3.large', 't3.xlarge', 't3.2xlarge', 't3.12xlarge']);
  });
  it('puts an exact match first', () => {
    expect(sortTypes(rows, 't3.micro')[0].name).toBe('t3.micro');
  });
});

describe('formatMemory', () => {
  it('uses GiB from 1 GiB up', () => {
    expect(formatMemory(512)).toBe('512 MiB');
    expect(formatMemory(1024)).toBe('1 GiB');
    expect(formatMemory(1536)).toBe('1.5 GiB');
    expect(formatMemory(32768)).toBe('32 GiB');
  });
});
