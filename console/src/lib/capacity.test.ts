import { describe, expect, it } from 'vitest';
import { formatMib, parseCapacity, percentUsed } from './capacity';

const attr = (name: string, value: string) => ({ AttributeName: name, AttributeValues: [{ AttributeValue: value }] });

describe('parseCapacity', () => {
  it('reads the account figures and leaves the host out when not shown', () => {
    const c = parseCapacity([attr('kiln:vcpu-limit', '32'), attr('kiln:vcpus-in-use', '3')], undefined);
    expect(c).toEqual({ vcpuLimit: 32, vcpusInUse: 3, host: undefined });
  });
  it("reads the host's figures for the operator", () => {
    const c = parseCapacity(
      [attr('kiln:vcpu-limit', '32'), attr('kiln:vcpus-in-use', '2')],
      [
        attr('kiln:host-vcpus', '8'),
        attr('kiln:host-vcpus-in-use', '4'),
        attr('kiln:host-memory-mib', '24000'),
        attr('kiln:host-memory-mib-in-use', '2048'),
        attr('kiln:host-instances', '3'),
      ],
    );
    expect(c.host).toEqual({ vcpus: 8, vcpusInUse: 4, memoryMib: 24000, memoryMibInUse: 2048, instances: 3 });
  });
  it('marks missing or garbled values as unknown', () => {
    const c = parseCapacity([attr('kiln:vcpu-limit', 'lots'), { AttributeName: 'kiln:vcpus-in-use' }], []);
    expect(c.vcpuLimit).toBeNaN();
    expect(c.vcpusInUse).toBeNaN();
    expect(c.host?.vcpus).toBeNaN();
  });
});

describe('percentUsed', () => {
  it('rounds and clamps, and is 0 for an unknown or empty total', () => {
    expect(percentUsed(1, 3)).toBe(33);
    expect(percentUsed(5, 4)).toBe(100);
    expect(percentUsed(1, 0)).toBe(0);
    expect(percentUsed(NaN, 4)).toBe(0);
  });
});

describe('formatMib', () => {
  it('shows GiB from 1 GiB up', () => {
    expect(formatMib(512)).toBe('512 MiB');
    expect(formatMib(2048)).toBe('2.0 GiB');
    expect(formatMib(NaN)).toBe('—');
  });
});
