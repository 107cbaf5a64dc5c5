import { describe, expect, it } from 'vitest';
import { isCidr4, permissionFromForm, ruleRows } from './rules';

describe('ruleRows', () => {
  it('splits a permission into one row per source with a revocable permission each', () => {
    const rows = ruleRows([
      {
        IpProtocol: 'tcp', FromPort: 22, ToPort: 22,
        IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'SSH' }, { CidrIp: '10.0.0.0/8' }],
        UserIdGroupPairs: [{ GroupId: 'sg-1' }],
      },
      { IpProtocol: '-1', IpRanges: [{ CidrIp: '0.0.0.0/0' }] },
    ]);
    expect(rows.map((r) => [r.protocol, r.ports, r.source, r.description])).toEqual([
      ['TCP', '22', '0.0.0.0/0', 'SSH'],
      ['TCP', '22', '10.0.0.0/8', ''],
      ['TCP', '22', 'sg-1', ''],
      ['All traffic', 'All', '0.0.0.0/0', ''],
    ]);
    expect(rows[1].permission).toEqual({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8' }] });
    expect(new Set(rows.map((r) => r.key)).size).toBe(4);
  });
  it('shows port ranges', () => {
    expect(ruleRows([{ IpProtocol: 'udp', FromPort: 8000, ToPort: 8080, IpRanges: [{ CidrIp: '1.2.3.4/32' }] }])[0].ports).toBe('8000–8080');
  });
});

describe('permissionFromForm', () => {
  it('builds a TCP rule from a CIDR', () => {
    expect(permissionFromForm({ protocol: 'tcp', ports: '443', source: '0.0.0.0/0', description: 'web' })).toEqual({
      permission: { IpProtocol: 'tcp', FromPort: 443, ToPort: 443, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'web' }] },
    });
  });
  it('builds ranges, group sources, IPv6 and all-traffic rules', () => {
    expect(permissionFromForm({ protocol: 'udp', ports: '53-54', source: 'sg-0abc', description: '' }).permission).toEqual({
      IpProtocol: 'udp', FromPort: 53, ToPort: 54, UserIdGroupPairs: [{ GroupId: 'sg-0abc', Description: undefined }],
    });
    expect(permissionFromForm({ protocol: '-1', ports: '', source: '::/0', description: '' }).permission).toEqual({
      IpProtocol: '-1', Ipv6Ranges: [{ CidrIpv6: '::/0', Description: undefined }],
    });
  });
  it('rejects bad ports and sources', () => {
    expect(permissionFromForm({ protocol: 'tcp', ports: 'ssh', source: '0.0.0.0/0', description: '' }).error).toMatch(/Ports/);
    expect(permissionFromForm({ protocol: 'tcp', ports: '90-80', source: '0.0.0.0/0', description: '' }).error).toMatch(/low to high/);
    expect(permissionFromForm({ protocol: 'tcp', ports: '22', source: '300.0.0.0/8', description: '' }).error).toMatch(/source/);
  });
  it('checks IPv4 CIDRs', () => {
    expect(isCidr4('10.0.0.0/16')).toBe(true);
    expect(isCidr4('10.0.0.0/33')).toBe(false);
    expect(isCidr4('10.0.0/16')).toBe(false);
  });
});
