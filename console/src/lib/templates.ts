// Launch templates: the wizard's request as template data, and a version's data as
// the templates page lists it.
import type {
  LaunchTemplateVersion, RequestLaunchTemplateData, ResponseLaunchTemplateData, RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';

/**
 * The launch-template data of a RunInstances input. A template has no SubnetId or
 * SecurityGroupIds beside a network interface: with a subnet, both move into the
 * first interface, as the console on AWS does. Counts and ClientToken are a launch's,
 * not a template's, and are left out.
 */
export function templateDataOf(input: RunInstancesCommandInput): RequestLaunchTemplateData {
  const d: RequestLaunchTemplateData = {};
  if (input.ImageId) d.ImageId = input.ImageId;
  if (input.InstanceType) d.InstanceType = input.InstanceType;
  if (input.KeyName) d.KeyName = input.KeyName;
  if (input.UserData) d.UserData = input.UserData;
  if (input.MetadataOptions) d.MetadataOptions = { HttpTokens: input.MetadataOptions.HttpTokens, HttpEndpoint: input.MetadataOptions.HttpEndpoint };
  if (input.InstanceInitiatedShutdownBehavior) d.InstanceInitiatedShutdownBehavior = input.InstanceInitiatedShutdownBehavior;
  if (input.DisableApiTermination) d.DisableApiTermination = true;
  if (input.BlockDeviceMappings?.length) {
    d.BlockDeviceMappings = input.BlockDeviceMappings.map((m) => ({ DeviceName: m.DeviceName, Ebs: m.Ebs ? { ...m.Ebs } : undefined }));
  }
  if (input.TagSpecifications?.length) {
    d.TagSpecifications = input.TagSpecifications.map((t) => ({ ResourceType: t.ResourceType as 'instance', Tags: t.Tags }));
  }
  if (input.NetworkInterfaces?.length) {
    d.NetworkInterfaces = input.NetworkInterfaces.map((n) => ({
      DeviceIndex: n.DeviceIndex,
      AssociatePublicIpAddress: n.AssociatePublicIpAddress,
      DeleteOnTermination: n.DeleteOnTermination,
      SubnetId: n.SubnetId,
      Groups: n.Groups,
    }));
  } else if (input.SubnetId) {
    d.NetworkInterfaces = [{ DeviceIndex: 0, SubnetId: input.SubnetId, Groups: input.SecurityGroupIds, DeleteOnTermination: true }];
  } else if (input.SecurityGroupIds?.length) {
    d.SecurityGroupIds = input.SecurityGroupIds;
  }
  return d;
}

/** A template name as EC2 takes it: 3–128 of letters, digits and ( ) . / _ - */
export function templateNameProblem(name: string): string | null {
  if (name.length < 3 || name.length > 128) return 'A launch template name is 3 to 128 characters.';
  if (!/^[a-zA-Z0-9().\/_-]+$/.test(name)) return 'A launch template name uses letters, digits and ( ) . / _ - only.';
  return null;
}

/** One version's data as label and value pairs, only what it sets. */
export function describeTemplateData(d: ResponseLaunchTemplateData | undefined): [string, string][] {
  if (!d) return [];
  const out: [string, string][] = [];
  const add = (label: string, v: string | undefined | false) => {
    if (v) out.push([label, v]);
  };
  add('AMI', d.ImageId);
  add('Instance type', d.InstanceType);
  add('Key pair', d.KeyName);
  add('Security groups', [...(d.SecurityGroupIds ?? []), ...(d.SecurityGroups ?? [])].join(', '));
  add(
    'Network interfaces',
    (d.NetworkInterfaces ?? [])
      .map((n) => `#${n.DeviceIndex ?? 0}${n.SubnetId ? ` in ${n.SubnetId}` : ''}${n.AssociatePublicIpAddress ? ', public IP' : ''}${n.Groups?.length ? ` (${n.Groups.join(', ')})` : ''}`)
      .join('; '),
  );
  add(
    'Storage',
    (d.BlockDeviceMappings ?? [])
      .map((m) => `${m.DeviceName}: ${m.Ebs?.VolumeSize ? `${m.Ebs.VolumeSize} GiB ` : ''}${m.Ebs?.VolumeType ?? ''}${m.Ebs?.SnapshotId ? ` from ${m.Ebs.SnapshotId}` : ''}`.trim())
      .join('; '),
  );
  add('Tags', (d.TagSpecifications ?? []).flatMap((t) => (t.Tags ?? []).map((g) => `${t.ResourceType}: ${g.Key}=${g.Value ?? ''}`)).join(', '));
  add('Zone', d.Placement?.AvailabilityZone);
  add('IMDSv2', d.MetadataOptions?.HttpTokens ? (d.MetadataOptions.HttpTokens === 'required' ? 'required' : 'optional') : undefined);
  add('Shutdown behaviour', d.InstanceInitiatedShutdownBehavior);
  add('Termination protection', d.DisableApiTermination ? 'on' : undefined);
  add('User data', d.UserData ? `${d.UserData.length} base64 characters` : undefined);
  return out;
}

/** Versions newest first. */
export function sortVersions(versions: LaunchTemplateVersion[]): LaunchTemplateVersion[] {
  return [...versions].sort((a, b) => (b.VersionNumber ?? 0) - (a.VersionNumber ?? 0));
}
