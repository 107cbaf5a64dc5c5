import { describe, expect, it } from 'vitest';
import { describeTemplateData, sortVersions, templateDataOf, templateNameProblem } from './templates';

describe('templateDataOf', () => {
  it('keeps what a template holds and leaves counts out', () => {
    const d = templateDataOf({
      ImageId: 'ami-1',
      InstanceType: 't3.micro',
      MinCount: 2,
      MaxCount: 2,
      KeyName: 'k',
      SecurityGroupIds: ['sg-1'],
      UserData: 'aGk=',
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
      InstanceInitiatedShutdownBehavior: 'terminate',
      DisableApiTermination: true,
      TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'web' }] }],
      BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { VolumeSize: 10, VolumeType: 'gp3', DeleteOnTermination: true } }],
    });
    expect(d).toEqual({
      ImageId: 'ami-1',
      InstanceType: 't3.micro',
      KeyName: 'k',
      SecurityGroupIds: ['sg-1'],
      UserData: 'aGk=',
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
      InstanceInitiatedShutdownBehavior: 'terminate',
      DisableApiTermination: true,
      TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'web' }] }],
      BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { VolumeSize: 10, VolumeType: 'gp3', DeleteOnTermination: true } }],
    });
    expect('MinCount' in d).toBe(false);
  });

  it('moves a subnet and its groups into the first interface', () => {
    expect(templateDataOf({ ImageId: 'ami-1', MinCount: 1, MaxCount: 1, SubnetId: 'subnet-1', SecurityGroupIds: ['sg-1'] })).toEqual({
      ImageId: 'ami-1',
      NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: 'subnet-1', Groups: ['sg-1'], DeleteOnTermination: true }],
    });
  });

  it('keeps interfaces as given', () => {
    const d = templateDataOf({
      MinCount: 1,
      MaxCount: 1,
      NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: false, DeleteOnTermination: true, Groups: ['sg-2'] }],
    });
    expect(d.NetworkInterfaces).toEqual([{ DeviceIndex: 0, AssociatePublicIpAddress: false, DeleteOnTermination: true, SubnetId: undefined, Groups: ['sg-2'] }]);
    expect(d.SecurityGroupIds).toBeUndefined();
  });
});

describe('templateNameProblem', () => {
  it("follows EC2's rule", () => {
    expect(templateNameProblem('web-servers')).toBeNull();
    expect(templateNameProblem('a/b_(c).d')).toBeNull();
    expect(templateNameProblem('ab')).toMatch(/3 to 128/);
    expect(templateNameProblem('has space')).toMatch(/letters, digits/);
    expect(templateNameProblem('x'.repeat(129))).toMatch(/3 to 128/);
  });
});

describe('describeTemplateData', () => {
  it('lists only what the version sets', () => {
    expect(describeTemplateData(undefined)).toEqual([]);
    expect(
      describeTemplateData({
        ImageId: 'ami-1',
        InstanceType: 't3.nano',
        BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { VolumeSize: 4, VolumeType: 'gp3' } }],
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'env', Value: 'dev' }] }],
        MetadataOptions: { HttpTokens: 'required' },
        NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: 'subnet-1', AssociatePublicIpAddress: true }],
      }),
    ).toEqual([
      ['AMI', 'ami-1'],
      ['Instance type', 't3.nano'],
      ['Network interfaces', '#0 in subnet-1, public IP'],
      ['Storage', '/dev/sdf: 4 GiB gp3'],
      ['Tags', 'instance: env=dev'],
      ['IMDSv2', 'required'],
    ]);
  });
});

describe('sortVersions', () => {
  it('puts the newest first', () => {
    expect(sortVersions([{ VersionNumber: 1 }, { VersionNumber: 3 }, { VersionNumber: 2 }]).map((v) => v.VersionNumber)).toEqual([3, 2, 1]);
  });
});
