import type { Image } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { decodeBase64Utf8 } from './encoding';
import {
  buildRunInstancesInput, defaultGroupName, ingressPermissions, initialWizardState, newExtraVolume, nextDeviceName, rootDevice,
  subnetPublicIpDefault, validateWizard,
} from './launch';

const image: Image = {
  ImageId: 'ami-0123456789abcdef0',
  Architecture: 'x86_64',
  RootDeviceName: '/dev/xvda',
  BlockDeviceMappings: [
    { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 2, VolumeType: 'gp3', SnapshotId: 'snap-1' } },
  ],
};

const base = initialWizardState({ imageId: 'ami-0123456789abcdef0', newGroupName: 'launch-wizard-1' });

describe('buildRunInstancesInput', () => {
  it('makes a minimal launch from the defaults', () => {
    expect(buildRunInstancesInput(base, ['sg-1'], { image })).toEqual({
      ImageId: 'ami-0123456789abcdef0',
      InstanceType: 't3.micro',
      MinCount: 1,
      MaxCount: 1,
      SecurityGroupIds: ['sg-1'],
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
      InstanceInitiatedShutdownBehavior: 'stop',
    });
  });

  it('carries name, tags, key, count, user data and the advanced choices', () => {
    const input = buildRunInstancesInput(
      {
        ...base,
        name: 'web',
        tagsText: 'env=prod',
        keyName: 'k1',
        count: 3,
        userData: '#!/bin/sh\necho hé\n',
        imdsv2Required: false,
        shutdownBehavior: 'terminate',
        terminationProtection: true,
        subnetId: 'subnet-1',
      },
      ['sg-1', 'sg-2'],
      { image },
    );
    expect(input.MinCount).toBe(3);
    expect(input.MaxCount).toBe(3);
    expect(input.KeyName).toBe('k1');
    expect(input.SubnetId).toBe('subnet-1');
    expect(input.SecurityGroupIds).toEqual(['sg-1', 'sg-2']);
    expect(input.TagSpecifications).toEqual([
      { ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'web' }, { Key: 'env', Value: 'prod' }] },
    ]);
    expect(decodeBase64Utf8(input.UserData)).toBe('#!/bin/sh\necho hé\n');
    expect(input.MetadataOptions?.HttpTokens).toBe('optional');
    expect(input.InstanceInitiatedShutdownBehavior).toBe('terminate');
    expect(input.DisableApiTermination).toBe(true);
    expect(input.NetworkInterfaces).toBeUndefined();
  });

  it('uses a network interface only to override the subnet public-IP setting', () => {
    const off = buildRunInstancesInput({ ...base, subnetId: 'subnet-1', autoPublicIp: false }, ['sg-1'], {
      image, subnetMapsPublicIp: true,
    });
    expect(off.NetworkInterfaces).toEqual([
      { DeviceIndex: 0, AssociatePublicIpAddress: false, DeleteOnTermination: true, SubnetId: 'subnet-1', Groups: ['sg-1'] },
    ]);
    expect(off.SubnetId).toBeUndefined();
    expect(off.SecurityGroupIds).toBeUndefined();

    const same = buildRunInstancesInput({ ...base, subnetId: 'subnet-1', autoPublicIp: true }, ['sg-1'], {
      image, subnetMapsPublicIp: true,
    });
    expect(same.NetworkInterfaces).toBeUndefined();
    expect(same.SubnetId).toBe('subnet-1');
  });

  it('maps the root volume only when size or type change', () => {
    expect(buildRunInstancesInput({ ...base, rootSize: 2, rootType: 'gp3' }, [], { image }).BlockDeviceMappings).toBeUndefined();
    expect(buildRunInstancesInput({ ...base, rootSize: 8 }, [], { image }).BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8, VolumeType: 'gp3', DeleteOnTermination: true } },
    ]);
    expect(buildRunInstancesInput({ ...base, rootType: 'gp2' }, [], { image }).BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 2, VolumeType: 'gp2', DeleteOnTermination: true } },
    ]);
  });

  it('maps added volumes after the root, each with its own DeleteOnTermination', () => {
    const extraVolumes = [
      { deviceName: '/dev/sdf', sizeGiB: 10, volumeType: 'gp3', deleteOnTermination: true },
      { deviceName: '/dev/sdg', sizeGiB: 125, volumeType: 'st1', deleteOnTermination: false },
    ];
    expect(buildRunInstancesInput({ ...base, extraVolumes }, [], { image }).BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/sdf', Ebs: { VolumeSize: 10, VolumeType: 'gp3', DeleteOnTermination: true } },
      { DeviceName: '/dev/sdg', Ebs: { VolumeSize: 125, VolumeType: 'st1', DeleteOnTermination: false } },
    ]);
    const withRoot = buildRunInstancesInput({ ...base, rootSize: 4, extraVolumes }, [], { image }).BlockDeviceMappings ?? [];
    expect(withRoot.map((m) => m.DeviceName)).toEqual(['/dev/xvda', '/dev/sdf', '/dev/sdg']);
  });
});

describe('validateWizard', () => {
  it('accepts the defaults with an AMI and group name', () => {
    expect(validateWizard(base, { image, typeArchitectures: ['x86_64'] })).toEqual([]);
  });

  it('rejects an incompatible type, a shrunk root, bad counts and tags', () => {
    const errs = validateWizard(
      { ...base, instanceType: 't4g.micro', rootSize: 1, count: 0, tagsText: 'aws:x=1' },
      { image, typeArchitectures: ['arm64'] },
    );
    expect(errs).toHaveLength(4);
    expect(errs[0]).toBe('t4g.micro cannot run a x86_64 AMI.');
    expect(errs.join(' ')).toMatch(/at least the AMI's 2 GiB/);
  });

  it('needs a group name or selected groups', () => {
    expect(validateWizard({ ...base, newGroupName: ' ' })).toContain('Name the new security group.');
    expect(validateWizard({ ...base, sgMode: 'existing' })).toContain('Select at least one security group.');
    expect(validateWizard({ ...base, newGroupName: 'sg-x' })).toContain('Security group names cannot start with sg-.');
  });

  it('checks added volumes against their type and devices', () => {
    const v = (deviceName: string, sizeGiB: number, volumeType: string) => ({ deviceName, sizeGiB, volumeType, deleteOnTermination: true });
    expect(validateWizard({ ...base, extraVolumes: [v('/dev/sdf', 8, 'gp3')] }, { image })).toEqual([]);
    expect(validateWizard({ ...base, extraVolumes: [v('/dev/sdf', 8, 'st1')] }, { image })).toEqual([
      'A st1 volume (/dev/sdf) is 125–16384 GiB.',
    ]);
    expect(validateWizard({ ...base, extraVolumes: [v('/dev/sdf', 8, 'gp3'), v('/dev/sdf', 9, 'gp3')] }, { image })).toEqual([
      '/dev/sdf is used twice.',
    ]);
    expect(validateWizard({ ...base, extraVolumes: [v('/dev/xvda', 8, 'gp3')] }, { image })).toEqual(['/dev/xvda is used twice.']);
    expect(validateWizard({ ...base, extraVolumes: [v('/dev/sdf', 1.5, 'gp3')] }, { image })).toHaveLength(1);
  });

  it('needs an AMI', () => {
    expect(validateWizard({ ...base, imageId: '' })).toContain('Choose an AMI.');
  });
});

describe('ingressPermissions', () => {
  it('opens the chosen ports to everyone', () => {
    expect(ingressPermissions({ ssh: true, http: true, https: false })).toEqual([
      { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'SSH' }] },
      { IpProtocol: 'tcp', FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'HTTP' }] },
    ]);
    expect(ingressPermissions({ ssh: false, http: false, https: false })).toEqual([]);
  });
});

describe('helpers', () => {
  it('picks the first free launch-wizard name', () => {
    expect(defaultGroupName(['default', 'launch-wizard-1', 'launch-wizard-3'])).toBe('launch-wizard-2');
  });
  it('follows the subnet for the public-IP default', () => {
    expect(subnetPublicIpDefault(undefined)).toBe(true);
    expect(subnetPublicIpDefault({ MapPublicIpOnLaunch: false })).toBe(false);
    expect(subnetPublicIpDefault({})).toBe(false);
  });
  it('finds the root device', () => {
    expect(rootDevice(image)).toEqual({ deviceName: '/dev/xvda', sizeGiB: 2, volumeType: 'gp3' });
    expect(rootDevice(undefined)).toEqual({});
  });

  it('offers the next free device from sdf to sdp', () => {
    expect(nextDeviceName([])).toBe('/dev/sdf');
    expect(nextDeviceName(['/dev/sdf', '/dev/xvdg'])).toBe('/dev/sdh');
    expect(nextDeviceName('fghijklmnop'.split('').map((c) => `/dev/sd${c}`))).toBeUndefined();
    expect(newExtraVolume([], '/dev/xvda')).toEqual({ deviceName: '/dev/sdf', sizeGiB: 8, volumeType: 'gp3', deleteOnTermination: true });
  });
});
