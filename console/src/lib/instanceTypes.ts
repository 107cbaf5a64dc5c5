// The instance type picker: rows, compatibility with an AMI's architecture, filters.
import type { InstanceTypeInfo } from '@aws-sdk/client-ec2';

export interface TypeRow {
  name: string;
  vcpus: number;
  memoryMiB: number;
  architectures: string[];
  currentGeneration: boolean;
}

export interface TypeChoice extends TypeRow {
  compatible: boolean;
  /** Why the type cannot run the AMI, when it cannot. */
  reason?: string;
}

export function toTypeRow(t: InstanceTypeInfo): TypeRow {
  return {
    name: t.InstanceType ?? '',
    vcpus: t.VCpuInfo?.DefaultVCpus ?? 0,
    memoryMiB: t.MemoryInfo?.SizeInMiB ?? 0,
    architectures: (t.ProcessorInfo?.SupportedArchitectures ?? []).map(String),
    currentGeneration: t.CurrentGeneration ?? true,
  };
}

/** The architecture an instance type must support to run an AMI of `amiArch`. */
export function requiredArchitecture(amiArch: string): string {
  // Mac AMIs name their own architectures; the types list them the same way.
  return amiArch;
}

/** Marks each type compatible with an AMI architecture or not, with the reason. */
export function chooseCompatible(rows: TypeRow[], amiArch: string | undefined): TypeChoice[] {
  return rows.map((r) => {
    if (!amiArch) return { ...r, compatible: true };
    const need = requiredArchitecture(amiArch);
    if (r.architectures.includes(need)) return { ...r, compatible: true };
    return {
      ...r,
      compatible: false,
      reason: `Supports ${r.architectures.join(', ') || 'no architecture'}; the AMI is ${need}`,
    };
  });
}

export interface TypeFilter {
  text?: string;
  minVcpus?: number;
  minMemoryGiB?: number;
  compatibleOnly?: boolean;
}

export function filterTypes<T extends TypeChoice>(rows: T[], f: TypeFilter): T[] {
  const text = (f.text ?? '').trim().toLowerCase();
  return rows.filter(
    (r) =>
      (!text || r.name.toLowerCase().includes(text)) &&
      (!f.minVcpus || r.vcpus >= f.minVcpus) &&
      (!f.minMemoryGiB || r.memoryMiB >= f.minMemoryGiB * 1024) &&
      (!f.compatibleOnly || r.compatible),
  );
}

const SIZE_ORDER = ['nano', 'micro', 'small', 'medium', 'large', 'xlarge'];

/** Orders sizes as people read them: t3.nano < t3.micro < … < t3.xlarge < t3.2xlarge. */
function sizeRank(size: string): number {
  const i = SIZE_ORDER.indexOf(size);
  if (i >= 0) return i;
  const m = /^(\d+)xlarge$/.exec(size);
  if (m) return SIZE_ORDER.length + Number(m[1]);
  if (size === 'metal' || size.startsWith('metal')) return 10000;
  return 5000;
}

/** Sorts by family name, then by size within a family; exact text matches come first. */
export function sortTypes<T extends TypeRow>(rows: T[], text = ''): T[] {
  const exact = text.trim().toLowerCase();
  return [...rows].sort((a, b) => {
    if (exact) {
      const ea = a.name === exact ? 0 : 1;
      const eb = b.name === exact ? 0 : 1;
      if (ea !== eb) return ea - eb;
    }
    const [fa, sa = ''] = a.name.split('.');
    const [fb, sb = ''] = b.name.split('.');
    if (fa !== fb) return fa.localeCompare(fb, 'en', { numeric: true });
    const d = sizeRank(sa) - sizeRank(sb);
    return d !== 0 ? d : sa.localeCompare(sb);
  });
}

export function formatMemory(mib: number): string {
  const gib = mib / 1024;
  if (gib >= 1) return `${Number.isInteger(gib) ? gib : gib.toFixed(gib < 10 ? 2 : 1).replace(/\.?0+$/, '')} GiB`;
  return `${mib} MiB`;
}
