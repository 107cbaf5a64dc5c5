import { DeleteSnapshotCommand, DescribeSnapshotsCommand, type Snapshot } from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { Notice, PageHeader, Refreshing, SimpleConfirm, StateBadge } from '../components/ui';
import { nameOf } from '../lib/tags';
import { formatTime } from '../lib/time';
import { SnapshotVolume } from './Volumes';

export default function Snapshots() {
  const q = useQuery((c) => c.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'] })), [], 3000);
  const [selected, setSelected] = useState<string[]>([]);
  const [dialog, setDialog] = useState<'create' | 'delete' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const snap = q.data?.Snapshots?.find((s) => s.SnapshotId === selected[0]);
  const columns: Column<Snapshot>[] = [
    { key: 'name', header: 'Name', render: (s) => nameOf(s.Tags) || <span className="muted">—</span> },
    { key: 'id', header: 'Snapshot ID', render: (s) => <code>{s.SnapshotId}</code> },
    { key: 'vol', header: 'Volume', render: (s) => <code>{s.VolumeId}</code>, className: 'hide-narrow' },
    { key: 'size', header: 'Size', render: (s) => `${s.VolumeSize} GiB` },
    { key: 'state', header: 'State', render: (s) => <StateBadge state={s.State} /> },
    { key: 'progress', header: 'Progress', render: (s) => s.Progress ?? '—', className: 'hide-narrow' },
    { key: 'desc', header: 'Description', render: (s) => s.Description, className: 'hide-narrow' },
    { key: 'started', header: 'Started', render: (s) => formatTime(s.StartTime), className: 'nowrap' },
  ];
  return (
    <section>
      <PageHeader title="Snapshots" status={<Refreshing on={q.refreshing && !q.loading} />}>
        <button type="button" className="btn-primary" onClick={() => setDialog('create')} data-testid="snapshot-create-open">
          Create snapshot
        </button>
        <button type="button" className="btn-danger-outline" disabled={!snap} onClick={() => setDialog('delete')} data-testid="snapshot-delete">
          Delete
        </button>
      </PageHeader>
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="Snapshots"
        testid="snapshots-table"
        rows={q.data?.Snapshots}
        columns={columns}
        rowKey={(s) => s.SnapshotId ?? ''}
        loading={q.loading}
        error={q.error}
        empty="No snapshots."
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(s) => ({ 'data-testid': 'snapshot-row', 'data-snapshot-id': s.SnapshotId, 'data-state': s.State })}
      />
      {dialog === 'create' && (
        <SnapshotVolume
          onClose={() => setDialog(null)}
          onDone={(id) => {
            setDialog(null);
            setFlash(`Creating ${id}.`);
            q.refresh();
          }}
        />
      )}
      {dialog === 'delete' && snap && (
        <SimpleConfirm
          danger
          title="Delete snapshot?"
          label="Delete"
          text={`Delete ${snap.SnapshotId}? Snapshots used by an AMI cannot be deleted.`}
          action={(c) => c.send(new DeleteSnapshotCommand({ SnapshotId: snap.SnapshotId }))}
          onClose={() => setDialog(null)}
          onDone={() => {
            setDialog(null);
            setSelected([]);
            setFlash(`Deleted ${snap.SnapshotId}.`);
            q.refresh();
          }}
        />
      )}
    </section>
  );
}
