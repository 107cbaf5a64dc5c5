// The launch wizard's state and the requests it becomes.
import type { Image, IpPermission, RunInstancesCommandInput, TagSpecification } from '@aws-sdk/client-ec2';
import { encodeBase64Utf8 } from './encoding';
import { parseTags } from './tags';

export interface QuickRules {
  ssh: boolean;
  http: boolean;
  https: boolean;
}

export interface WizardState {
  name: string;
  tagsText: string;
  imageId: string;
  instanceType: string;
  /** '' for no key pair. */
  keyName: string;
  vpcId: string;
  /** '' lets EC2 choose a default subnet. */
  subnetId: string;
  /** null follows the subnet's own setting. */
  autoPublicIp: boolean | null;
  sgMode: 'new' | 'existing';
  newGroupName: string;
  newGroupDescription: string;
  newGroupRules: QuickRules;
  existingGroupIds: string[];
  /** '' keeps the AMI's size. */
  rootSize: number | '';
  rootType: string;
  /** EBS volumes made and attached at launch, beside the root. */
  extraVolumes: ExtraVolume[];
  userData: string;
  imdsv2Required: boolean;
  shutdownBehavior: 'stop' | 'terminate';
  terminationProtection: boolean;
  count: number;
}

export const ROOT_VOLUME_TYPES = ['gp3', 'gp2', 'standard'] as const;
/** What an added volume can be: the root's types and the provisioned and HDD ones. */
export const EXTRA_VOLUME_TYPES = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard'] as const;

/** One added volume of the wizard's storage section. */
export interface ExtraVolume {
  deviceName: string;
  sizeGiB: number;
  volumeType: string;
  deleteOnTermination: boolean;
}

/** EC2's size limits per volume type, in GiB. */
export const VOLUME_SIZE_LIMITS: Record<string, [number, number]> = {
  gp2: [1, 16384],
  gp3: [1, 16384],
  io1: [4, 16384],
  io2: [4, 65536],
  st1: [125, 16384],
  sc1: [125, 16384],
  standard: [1, 1024],
};

/** The first free device of /dev/sdf–/dev/sdp, as the console on AWS offers them. */
export function nextDeviceName(taken: string[]): string | undefined {
  const used = new Set(taken);
  for (const c of 'fghijklmnop') {
    const name = `/dev/sd${c}`;
    if (!used.has(name) && !used.has(`/dev/xvd${c}`)) return name;
  }
  return undefined;
}

/** A new added volume on the next free device: 8 GiB gp3, deleted with the instance. */
export function newExtraVolume(existing: ExtraVolume[], rootDeviceName?: string): ExtraVolume | undefined {
  const deviceName = nextDeviceName([...existing.map((v) => v.deviceName), ...(rootDeviceName ? [rootDeviceName] : [])]);
  return deviceName ? { deviceName, sizeGiB: 8, volumeType: 'gp3', deleteOnTermination: true } : undefined;
}

export function initialWizardState(overrides: Partial<WizardState> = {}): WizardState {
  return {
    name: '',
    tagsText: '',
    imageId: '',
    instanceType: 't3.micro',
    keyName: '',
    vpcId: '',
    subnetId: '',
    autoPublicIp: null,
    sgMode: 'new',
    newGroupName: '',
    newGroupDescription: '',
    newGroupRules: { ssh: true, http: false, https: false },
    existingGroupIds: [],
    rootSize: '',
    rootType: 'gp3',
    extraVolumes: [],
    userData: '',
    imdsv2Required: true,
    shutdownBehavior: 'stop',
    terminationProtection: false,
    count: 1,
    ...overrides,
  };
}

/** The root device of an AMI: its name, size and type, from its block device mappings. */
export function rootDevice(image: Image | undefined): { deviceName?: string; sizeGiB?: number; volumeType?: string } {
  if (!image) return {};
  const name = image.RootDeviceName;
  const m = image.BlockDeviceMappings?.find((b) => b.DeviceName === name) ?? image.BlockDeviceMappings?.find((b) => b.Ebs);
  return { deviceName: name ?? m?.DeviceName, sizeGiB: m?.Ebs?.VolumeSize, volumeType: m?.Ebs?.VolumeType };
}

const RULE_PORTS: { key: keyof QuickRules; port: number; label: string }[] = [
  { key: 'ssh', port: 22, label: 'SSH' },
  { key: 'http', port: 80, label: 'HTTP' },
  { key: 'https', port: 443, label: 'HTTPS' },
];

/** The ingress rules of the wizard's checkboxes, each open to 0.0.0.0/0. */
export function ingressPermissions(rules: QuickRules): IpPermission[] {
  return RULE_PORTS.filter((r) => rules[r.key]).map((r) => ({
    IpProtocol: 'tcp',
    FromPort: r.port,
    ToPort: r.port,
    IpRanges: [{ CidrIp: '0.0.0.0/0', Description: r.label }],
  }));
}

/**
 * Whether instances in the chosen subnet get a public IP unless told otherwise: the
 * subnet's MapPublicIpOnLaunch, or, with no subnet chosen, true (EC2 then picks a
 * default subnet of the default VPC, and those map public IPs).
 */
export function subnetPublicIpDefault(subnet: { MapPublicIpOnLaunch?: boolean } | undefined): boolean {
  return subnet ? (subnet.MapPublicIpOnLaunch ?? false) : true;
}

/** A default name for a new security group, like AWS's launch-wizard-N. */
export function defaultGroupName(existing: string[]): string {
  const taken = new Set(existing);
  for (let n = 1; ; n++) {
    const name = `launch-wizard-${n}`;
    if (!taken.has(name)) return name;
  }
}

export interface LaunchContext {
  image?: Image;
  /** Architectures the chosen type supports (to check compatibility). */
  typeArchitectures?: string[];
  /** The chosen subnet's MapPublicIpOnLaunch (default subnets: true). */
  subnetMapsPublicIp?: boolean;
}

/** What stops the wizard from launching; empty when it can launch. */
export function validateWizard(s: WizardState, ctx: LaunchContext = {}): string[] {
  const errors: string[] = [];
  if (!s.imageId) errors.push('Choose an AMI.');
  if (!s.instanceType) errors.push('Choose an instance type.');
  const arch = ctx.image?.Architecture;
  if (arch && ctx.typeArchitectures && !ctx.typeArchitectures.includes(arch)) {
    errors.push(`${s.instanceType} cannot run a ${arch} AMI.`);
  }
  if (s.name.length > 256) errors.push('The name is at most 256 characters.');
  errors.push(...parseTags(s.tagsText).errors.map((e) => `Tag ${e}.`));
  if (parseTags(s.tagsText).tags.some((t) => t.Key === 'Name') && s.name) {
    errors.push('Give the name either in the Name field or as a Name tag, not both.');
  }
  if (!Number.isInteger(s.count) || s.count < 1 || s.count > 20) errors.push('Launch between 1 and 20 instances.');
  if (s.sgMode === 'new') {
    if (!s.newGroupName.trim()) errors.push('Name the new security group.');
    else if (s.newGroupName.length > 255) errors.push('Security group names are at most 255 characters.');
    else if (/^sg-/i.test(s.newGroupName)) errors.push('Security group names cannot start with sg-.');
  } else if (s.existingGroupIds.length === 0) {
    errors.push('Select at least one security group.');
  }
  const root = rootDevice(ctx.image);
  if (s.rootSize !== '') {
    if (!Number.isInteger(s.rootSize) || s.rootSize < 1 || s.rootSize > 16384) errors.push('Root volume size is 1–16384 GiB.');
    else if (root.sizeGiB && s.rootSize < root.sizeGiB) errors.push(`The root volume must be at least the AMI's ${root.sizeGiB} GiB.`);
  }
  const devices = new Set<string>();
  for (const v of s.extraVolumes) {
    const [min, max] = VOLUME_SIZE_LIMITS[v.volumeType] ?? [1, 16384];
    if (!Number.isInteger(v.sizeGiB) || v.sizeGiB < min || v.sizeGiB > max) {
      errors.push(`A ${v.volumeType} volume (${v.deviceName}) is ${min}–${max} GiB.`);
    }
    if (devices.has(v.deviceName) || v.deviceName === root.deviceName) errors.push(`${v.deviceName} is used twice.`);
    devices.add(v.deviceName);
  }
  if (new TextEncoder().encode(s.userData).length > 16384) errors.push('User data is at most 16 KiB.');
  return errors;
}

/**
 * The RunInstances input for the wizard's state. `securityGroupIds` are the groups to
 * use (the new group's id once created, or the selected ones). The network goes in a
 * NetworkInterfaces entry only when the public-IP choice differs from the subnet's own.
 */
export function buildRunInstancesInput(
  s: WizardState,
  securityGroupIds: string[],
  ctx: LaunchContext = {},
): RunInstancesCommandInput {
  const input: RunInstancesCommandInput = {
    ImageId: s.imageId,
    InstanceType: s.instanceType as RunInstancesCommandInput['InstanceType'],
    MinCount: s.count,
    MaxCount: s.count,
  };
  if (s.keyName) input.KeyName = s.keyName;

  const tags = parseTags(s.tagsText).tags;
  if (s.name.trim()) tags.unshift({ Key: 'Name', Value: s.name.trim() });
  if (tags.length > 0) {
    const specs: TagSpecification[] = [{ ResourceType: 'instance', Tags: tags }];
    input.TagSpecifications = specs;
  }

  const subnetDefault = ctx.subnetMapsPublicIp ?? true;
  const overridePublic = s.autoPublicIp !== null && s.autoPublicIp !== subnetDefault;
  if (overridePublic) {
    input.NetworkInterfaces = [
      {
        DeviceIndex: 0,
        AssociatePublicIpAddress: s.autoPublicIp ?? undefined,
        DeleteOnTermination: true,
        ...(s.subnetId ? { SubnetId: s.subnetId } : {}),
        ...(securityGroupIds.length ? { Groups: securityGroupIds } : {}),
      },
    ];
  } else {
    if (s.subnetId) input.SubnetId = s.subnetId;
    if (securityGroupIds.length) input.SecurityGroupIds = securityGroupIds;
  }

  const root = rootDevice(ctx.image);
  const sizeChanged = s.rootSize !== '' && s.rootSize !== root.sizeGiB;
  const typeChanged = !!s.rootType && s.rootType !== (root.volumeType ?? '');
  const mappings: NonNullable<RunInstancesCommandInput['BlockDeviceMappings']> = [];
  if (root.deviceName && (sizeChanged || typeChanged)) {
    mappings.push({
      DeviceName: root.deviceName,
      Ebs: {
        ...(s.rootSize !== '' ? { VolumeSize: s.rootSize } : root.sizeGiB ? { VolumeSize: root.sizeGiB } : {}),
        ...(s.rootType ? { VolumeType: s.rootType as 'gp3' } : {}),
        DeleteOnTermination: true,
      },
    });
  }
  for (const v of s.extraVolumes) {
    mappings.push({
      DeviceName: v.deviceName,
      Ebs: { VolumeSize: v.sizeGiB, VolumeType: v.volumeType as 'gp3', DeleteOnTermination: v.deleteOnTermination },
    });
  }
  if (mappings.length > 0) input.BlockDeviceMappings = mappings;

  if (s.userData) input.UserData = encodeBase64Utf8(s.userData);
  input.MetadataOptions = { HttpTokens: s.imdsv2Required ? 'required' : 'optional', HttpEndpoint: 'enabled' };
  input.InstanceInitiatedShutdownBehavior = s.shutdownBehavior;
  if (s.terminationProtection) input.DisableApiTermination = true;
  return input;
}
