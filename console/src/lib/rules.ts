// Security group rules: one row per source, and the form that adds a rule.
import type { IpPermission, SecurityGroup } from '@aws-sdk/client-ec2';

export interface RuleRow {
  key: string;
  protocol: string;
  ports: string;
  source: string;
  description: string;
  /** The single-source permission that Revoke takes to remove this row. */
  permission: IpPermission;
}

export function protocolLabel(p: string | undefined): string {
  switch (p) {
    case '-1':
      return 'All traffic';
    case 'tcp':
    case '6':
      return 'TCP';
    case 'udp':
    case '17':
      return 'UDP';
    case 'icmp':
    case '1':
      return 'ICMP';
    default:
      return p ?? '—';
  }
}

export function portLabel(p: IpPermission): string {
  if (p.IpProtocol === '-1') return 'All';
  if (p.FromPort === undefined || p.FromPort === -1) return 'All';
  if (p.IpProtocol === 'icmp') return `type ${p.FromPort}${p.ToPort !== undefined && p.ToPort !== -1 ? ` code ${p.ToPort}` : ''}`;
  return p.FromPort === p.ToPort ? String(p.FromPort) : `${p.FromPort}–${p.ToPort}`;
}

/** Splits permissions into one row per CIDR, IPv6 CIDR, group or prefix list. */
export function ruleRows(perms: IpPermission[] | undefined): RuleRow[] {
  const rows: RuleRow[] = [];
  for (const p of perms ?? []) {
    const base: IpPermission = { IpProtocol: p.IpProtocol, FromPort: p.FromPort, ToPort: p.ToPort };
    const push = (source: string, description: string | undefined, perm: IpPermission) =>
      rows.push({
        key: `${p.IpProtocol}:${p.FromPort}:${p.ToPort}:${source}`,
        protocol: protocolLabel(p.IpProtocol),
        ports: portLabel(p),
        source,
        description: description ?? '',
        permission: perm,
      });
    for (const r of p.IpRanges ?? []) push(r.CidrIp ?? '', r.Description, { ...base, IpRanges: [{ CidrIp: r.CidrIp }] });
    for (const r of p.Ipv6Ranges ?? []) push(r.CidrIpv6 ?? '', r.Description, { ...base, Ipv6Ranges: [{ CidrIpv6: r.CidrIpv6 }] });
    for (const g of p.UserIdGroupPairs ?? [])
      push(g.GroupId ?? g.GroupName ?? '', g.Description, { ...base, UserIdGroupPairs: [{ GroupId: g.GroupId }] });
    for (const l of p.PrefixListIds ?? [])
      push(l.PrefixListId ?? '', l.Description, { ...base, PrefixListIds: [{ PrefixListId: l.PrefixListId }] });
  }
  return rows;
}

export interface RuleForm {
  /** tcp, udp, icmp or -1 (all). */
  protocol: string;
  /** "22", "8000-8080", or "" for all (with -1 or icmp). */
  ports: string;
  /** A CIDR (IPv4 or IPv6) or a security group id. */
  source: string;
  description: string;
}

const CIDR4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

export function isCidr4(s: string): boolean {
  const m = CIDR4.exec(s);
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
}

/** The permission of a rule form, or an error message. */
export function permissionFromForm(f: RuleForm): { permission?: IpPermission; error?: string } {
  const source = f.source.trim();
  const description = f.description.trim() || undefined;
  let fromPort: number | undefined;
  let toPort: number | undefined;
  if (f.protocol === 'tcp' || f.protocol === 'udp') {
    const m = /^\s*(\d+)\s*(?:[-–]\s*(\d+)\s*)?$/.exec(f.ports);
    if (!m) return { error: 'Ports are a number or a range like 8000-8080.' };
    fromPort = Number(m[1]);
    toPort = m[2] !== undefined ? Number(m[2]) : fromPort;
    if (fromPort > 65535 || toPort > 65535 || fromPort > toPort) return { error: 'Ports are 0–65535, low to high.' };
  } else if (f.protocol === 'icmp') {
    fromPort = -1;
    toPort = -1;
  } else if (f.protocol !== '-1') {
    return { error: 'Choose a protocol.' };
  }
  const perm: IpPermission = { IpProtocol: f.protocol, ...(fromPort !== undefined ? { FromPort: fromPort, ToPort: toPort } : {}) };
  if (isCidr4(source)) perm.IpRanges = [{ CidrIp: source, Description: description }];
  else if (/^[0-9a-f:]+\/\d{1,3}$/i.test(source) && source.includes(':')) perm.Ipv6Ranges = [{ CidrIpv6: source, Description: description }];
  else if (/^sg-[0-9a-f]+$/.test(source)) perm.UserIdGroupPairs = [{ GroupId: source, Description: description }];
  else return { error: 'The source is a CIDR (like 0.0.0.0/0) or a security group id.' };
  return { permission: perm };
}

/** Group names and ids for select lists. */
export function groupLabel(g: SecurityGroup): string {
  return `${g.GroupName ?? ''} (${g.GroupId ?? ''})`;
}
