import { CreateVpcCommand, DescribeSubnetsCommand, DescribeVpcsCommand, type Subnet, type Vpc } from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ErrorBox, Field, Notice, PageHeader } from '../components/ui';
import { isCidr4 } from '../lib/rules';
import { nameOf } from '../lib/tags';

export default function Vpcs() {
  const vpcs = useQuery((c) => c.send(new DescribeVpcsCommand({})), []);
  const subnets = useQuery((c) => c.send(new DescribeSubnetsCommand({})), []);
  const [creating, setCreating] = useState(false);
  const [flash, setFlash] = useState<string | null>(null);
  const vpcCols: Column<Vpc>[] = [
    { key: 'name', header: 'Name', render: (v) => nameOf(v.Tags) || <span className="muted">—</span> },
    { key: 'id', header: 'VPC ID', render: (v) => <code>{v.VpcId}</code> },
    { key: 'cidr', header: 'IPv4 CIDR', render: (v) => v.CidrBlock },
    { key: 'state', header: 'State', render: (v) => v.State },
    { key: 'default', header: 'Default', render: (v) => (v.IsDefault ? 'Yes' : 'No') },
  ];
  const subnetCols: Column<Subnet>[] = [
    { key: 'name', header: 'Name', render: (s) => nameOf(s.Tags) || <span className="muted">—</span> },
    { key: 'id', header: 'Subnet ID', render: (s) => <code>{s.SubnetId}</code> },
    { key: 'vpc', header: 'VPC', render: (s) => <code>{s.VpcId}</code> },
    { key: 'cidr', header: 'IPv4 CIDR', render: (s) => s.CidrBlock },
    { key: 'zone', header: 'Zone', render: (s) => s.AvailabilityZone, className: 'hide-narrow' },
    { key: 'public', header: 'Public IP on launch', render: (s) => (s.MapPublicIpOnLaunch ? 'Yes' : 'No'), className: 'hide-narrow' },
    { key: 'free', header: 'Free IPs', render: (s) => s.AvailableIpAddressCount, className: 'hide-narrow' },
  ];
  return (
    <section>
      <PageHeader title="VPCs">
        <button type="button" className="btn-primary" onClick={() => setCreating((v) => !v)} aria-expanded={creating} data-testid="vpc-create-open">
          Create VPC
        </button>
      </PageHeader>
      {creating && (
        <CreateVpc
          onDone={(id) => {
            setCreating(false);
            setFlash(`Created ${id}.`);
            vpcs.refresh();
          }}
        />
      )}
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable caption="VPCs" testid="vpcs-table" rows={vpcs.data?.Vpcs} columns={vpcCols} rowKey={(v) => v.VpcId ?? ''} loading={vpcs.loading} error={vpcs.error} empty="No VPCs." />
      <h2 className="section-title">Subnets</h2>
      <DataTable caption="Subnets" testid="subnets-table" rows={subnets.data?.Subnets} columns={subnetCols} rowKey={(s) => s.SubnetId ?? ''} loading={subnets.loading} error={subnets.error} empty="No subnets." />
    </section>
  );
}

function CreateVpc({ onDone }: { onDone: (id: string) => void }) {
  const [cidr, setCidr] = useState('10.0.0.0/16');
  const [name, setName] = useState('');
  const { run, busy, error } = useAction();
  const ok = isCidr4(cidr.trim());
  return (
    <form
      className="panel inline-form"
      onSubmit={async (e) => {
        e.preventDefault();
        const out = await run((c) =>
          c.send(
            new CreateVpcCommand({
              CidrBlock: cidr.trim(),
              TagSpecifications: name.trim() ? [{ ResourceType: 'vpc', Tags: [{ Key: 'Name', Value: name.trim() }] }] : undefined,
            }),
          ),
        );
        if (out?.Vpc?.VpcId) onDone(out.Vpc.VpcId);
      }}
    >
      <Field label="Name">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} />}</Field>
      <Field label="IPv4 CIDR" hint={ok ? '/16 to /28.' : <span className="warn-text">Not an IPv4 CIDR.</span>}>
        {(id) => <input id={id} value={cidr} onChange={(e) => setCidr(e.target.value)} required data-testid="vpc-cidr" />}
      </Field>
      <div className="field field-button">
        <button type="submit" className="btn-primary" disabled={busy || !ok} data-testid="vpc-create-submit">
          Create VPC
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}
