import {
  AllocateAddressCommand, AssociateAddressCommand, DescribeAddressesCommand, DisassociateAddressCommand, ReleaseAddressCommand,
  type Address,
} from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ErrorBox, Field, Modal, Notice, PageHeader, SimpleConfirm } from '../components/ui';
import { describeAllInstances } from '../lib/ec2list';
import { nameOf } from '../lib/tags';

export default function Addresses() {
  const q = useQuery((c) => c.send(new DescribeAddressesCommand({})), []);
  const [selected, setSelected] = useState<string[]>([]);
  const [dialog, setDialog] = useState<'associate' | 'disassociate' | 'release' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const alloc = useAction();
  const addr = q.data?.Addresses?.find((a) => a.AllocationId === selected[0]);
  const done = (msg: string) => {
    setDialog(null);
    setFlash(msg);
    q.refresh();
  };
  const columns: Column<Address>[] = [
    { key: 'ip', header: 'Public IP', render: (a) => <code>{a.PublicIp}</code> },
    { key: 'alloc', header: 'Allocation ID', render: (a) => <code>{a.AllocationId}</code> },
    { key: 'inst', header: 'Instance', render: (a) => a.InstanceId ?? '—' },
    { key: 'priv', header: 'Private IP', render: (a) => a.PrivateIpAddress ?? '—', className: 'hide-narrow' },
    { key: 'assoc', header: 'Association ID', render: (a) => a.AssociationId ?? '—', className: 'hide-narrow' },
  ];
  return (
    <section>
      <PageHeader title="Elastic IP addresses">
        <button
          type="button"
          className="btn-primary"
          disabled={alloc.busy}
          onClick={async () => {
            const out = await alloc.run((c) => c.send(new AllocateAddressCommand({ Domain: 'vpc' })));
            if (out) done(`Allocated ${out.PublicIp}.`);
          }}
          data-testid="eip-allocate"
        >
          Allocate Elastic IP
        </button>
      </PageHeader>
      <div className="actionbar" role="toolbar" aria-label="Address actions">
        <button type="button" disabled={!addr || !!addr.AssociationId} onClick={() => setDialog('associate')} data-testid="eip-associate">
          Associate
        </button>
        <button type="button" disabled={!addr?.AssociationId} onClick={() => setDialog('disassociate')} data-testid="eip-disassociate">
          Disassociate
        </button>
        <button type="button" className="btn-danger-outline" disabled={!addr || !!addr.AssociationId} onClick={() => setDialog('release')} data-testid="eip-release">
          Release
        </button>
      </div>
      <ErrorBox error={alloc.error} />
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="Elastic IP addresses"
        testid="eip-table"
        rows={q.data?.Addresses}
        columns={columns}
        rowKey={(a) => a.AllocationId ?? a.PublicIp ?? ''}
        loading={q.loading}
        error={q.error}
        empty="No Elastic IP addresses."
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(a) => ({ 'data-testid': 'eip-row', 'data-allocation-id': a.AllocationId, 'data-public-ip': a.PublicIp, 'data-instance-id': a.InstanceId ?? '' })}
      />
      {dialog === 'associate' && addr && <Associate address={addr} onClose={() => setDialog(null)} onDone={() => done(`Associated ${addr.PublicIp}.`)} />}
      {dialog === 'disassociate' && addr && (
        <SimpleConfirm
          title="Disassociate address?"
          label="Disassociate"
          text={`Disassociate ${addr.PublicIp} from ${addr.InstanceId ?? addr.NetworkInterfaceId}?`}
          action={(c) => c.send(new DisassociateAddressCommand({ AssociationId: addr.AssociationId }))}
          onClose={() => setDialog(null)}
          onDone={() => done(`Disassociated ${addr.PublicIp}.`)}
        />
      )}
      {dialog === 'release' && addr && (
        <SimpleConfirm
          danger
          title="Release address?"
          label="Release"
          text={`Release ${addr.PublicIp}? The address goes back to the pool.`}
          action={(c) => c.send(new ReleaseAddressCommand({ AllocationId: addr.AllocationId }))}
          onClose={() => setDialog(null)}
          onDone={() => {
            setSelected([]);
            done(`Released ${addr.PublicIp}.`);
          }}
        />
      )}
    </section>
  );
}

function Associate({ address, onClose, onDone }: { address: Address; onClose: () => void; onDone: () => void }) {
  const instances = useQuery((c) => describeAllInstances(c, [{ Name: 'instance-state-name', Values: ['running', 'stopped', 'pending'] }]), []);
  const [instanceId, setInstanceId] = useState('');
  const { run, busy, error } = useAction();
  const chosen = instanceId || instances.data?.[0]?.InstanceId || '';
  return (
    <Modal
      title={`Associate ${address.PublicIp}`}
      onClose={onClose}
      testid="eip-associate-dialog"
      footer={
        <>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button
            type="button"
            className="btn-primary"
            disabled={busy || !chosen}
            onClick={async () => {
              if (await run((c) => c.send(new AssociateAddressCommand({ AllocationId: address.AllocationId, InstanceId: chosen })))) onDone();
            }}
            data-testid="eip-associate-submit"
          >
            Associate
          </button>
        </>
      }
    >
      <Field label="Instance">
        {(id) => (
          <select id={id} value={chosen} onChange={(e) => setInstanceId(e.target.value)} data-testid="eip-instance">
            {instances.data?.length === 0 && <option value="">No instances</option>}
            {(instances.data ?? []).map((i) => (
              <option key={i.InstanceId} value={i.InstanceId}>
                {i.InstanceId} {nameOf(i.Tags) && `(${nameOf(i.Tags)})`} — {i.State?.Name}
              </option>
            ))}
          </select>
        )}
      </Field>
      <ErrorBox error={error ?? instances.error} />
    </Modal>
  );
}
