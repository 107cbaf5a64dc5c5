import {
  AttachVolumeCommand, CreateSnapshotCommand, CreateVolumeCommand, DeleteVolumeCommand, DescribeAvailabilityZonesCommand,
  DescribeVolumesCommand, DetachVolumeCommand, type Volume,
} from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ErrorBox, Field, Modal, Notice, PageHeader, Refreshing, SimpleConfirm, StateBadge } from '../components/ui';
import { describeAllInstances } from '../lib/ec2list';
import { nextDeviceName } from '../lib/launch';
import { nameOf } from '../lib/tags';
import { formatTime } from '../lib/time';

const TYPES = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard'];

export default function Volumes() {
  const q = useQuery((c) => c.send(new DescribeVolumesCommand({})), [], 3000);
  const [selected, setSelected] = useState<string[]>([]);
  const [dialog, setDialog] = useState<'create' | 'attach' | 'detach' | 'delete' | 'snapshot' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const vol = q.data?.Volumes?.find((v) => v.VolumeId === selected[0]);
  const attachment = vol?.Attachments?.[0];
  const done = (msg: string) => {
    setDialog(null);
    setFlash(msg);
    q.refresh();
  };

  const columns: Column<Volume>[] = [
    { key: 'name', header: 'Name', render: (v) => nameOf(v.Tags) || <span className="muted">—</span> },
    { key: 'id', header: 'Volume ID', render: (v) => <code>{v.VolumeId}</code> },
    { key: 'size', header: 'Size', render: (v) => `${v.Size} GiB` },
    { key: 'type', header: 'Type', render: (v) => v.VolumeType },
    { key: 'state', header: 'State', render: (v) => <StateBadge state={v.State} testid="volume-state" /> },
    { key: 'zone', header: 'Zone', render: (v) => v.AvailabilityZone, className: 'hide-narrow' },
    {
      key: 'att',
      header: 'Attached to',
      render: (v) => (v.Attachments?.length ? v.Attachments.map((a) => `${a.InstanceId} (${a.Device}, ${a.State})`).join(', ') : '—'),
    },
    { key: 'created', header: 'Created', render: (v) => formatTime(v.CreateTime), className: 'hide-narrow nowrap' },
  ];

  return (
    <section>
      <PageHeader title="Volumes" status={<Refreshing on={q.refreshing && !q.loading} />}>
        <button type="button" className="btn-primary" onClick={() => setDialog('create')} data-testid="volume-create-open">
          Create volume
        </button>
      </PageHeader>
      <div className="actionbar" role="toolbar" aria-label="Volume actions">
        <button type="button" disabled={vol?.State !== 'available'} onClick={() => setDialog('attach')} data-testid="volume-attach">
          Attach
        </button>
        <button type="button" disabled={!attachment || attachment.State !== 'attached'} onClick={() => setDialog('detach')} data-testid="volume-detach">
          Detach
        </button>
        <button type="button" disabled={!vol} onClick={() => setDialog('snapshot')} data-testid="volume-snapshot">
          Create snapshot
        </button>
        <button type="button" className="btn-danger-outline" disabled={vol?.State !== 'available'} onClick={() => setDialog('delete')} data-testid="volume-delete">
          Delete
        </button>
      </div>
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="Volumes"
        testid="volumes-table"
        rows={q.data?.Volumes}
        columns={columns}
        rowKey={(v) => v.VolumeId ?? ''}
        loading={q.loading}
        error={q.error}
        empty="No volumes."
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(v) => ({ 'data-testid': 'volume-row', 'data-volume-id': v.VolumeId, 'data-state': v.State })}
      />
      {dialog === 'create' && <CreateVolume onClose={() => setDialog(null)} onDone={(id) => done(`Creating ${id}.`)} />}
      {dialog === 'attach' && vol && <AttachVolume volume={vol} onClose={() => setDialog(null)} onDone={() => done(`Attaching ${vol.VolumeId}.`)} />}
      {dialog === 'detach' && vol && (
        <SimpleConfirm
          title="Detach volume?"
          label="Detach"
          text={`Detach ${vol.VolumeId} from ${attachment?.InstanceId}? Unmount it in the instance first.`}
          action={(c) => c.send(new DetachVolumeCommand({ VolumeId: vol.VolumeId }))}
          onClose={() => setDialog(null)}
          onDone={() => done(`Detaching ${vol.VolumeId}.`)}
        />
      )}
      {dialog === 'delete' && vol && (
        <SimpleConfirm
          danger
          title="Delete volume?"
          label="Delete"
          text={`Delete ${vol.VolumeId}? Its data is lost.`}
          action={(c) => c.send(new DeleteVolumeCommand({ VolumeId: vol.VolumeId }))}
          onClose={() => setDialog(null)}
          onDone={() => {
            setSelected([]);
            done(`Deleted ${vol.VolumeId}.`);
          }}
        />
      )}
      {dialog === 'snapshot' && vol && <SnapshotVolume volumeId={vol.VolumeId!} onClose={() => setDialog(null)} onDone={(id) => done(`Creating snapshot ${id}.`)} />}
    </section>
  );
}

function CreateVolume({ onClose, onDone }: { onClose: () => void; onDone: (id: string) => void }) {
  const zones = useQuery((c) => c.send(new DescribeAvailabilityZonesCommand({})), []);
  const [size, setSize] = useState(8);
  const [type, setType] = useState('gp3');
  const [zone, setZone] = useState('');
  const [snapshot, setSnapshot] = useState('');
  const [name, setName] = useState('');
  const { run, busy, error } = useAction();
  const az = zone || zones.data?.AvailabilityZones?.[0]?.ZoneName || '';
  const submit = async () => {
    const out = await run((c) =>
      c.send(
        new CreateVolumeCommand({
          AvailabilityZone: az,
          Size: snapshot ? size || undefined : size,
          VolumeType: type as 'gp3',
          SnapshotId: snapshot.trim() || undefined,
          ...(type === 'io1' || type === 'io2' ? { Iops: 3000 } : {}),
          TagSpecifications: name.trim() ? [{ ResourceType: 'volume', Tags: [{ Key: 'Name', Value: name.trim() }] }] : undefined,
        }),
      ),
    );
    if (out?.VolumeId) onDone(out.VolumeId);
  };
  return (
    <Modal
      title="Create volume"
      onClose={onClose}
      testid="volume-create-dialog"
      footer={
        <>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="button" className="btn-primary" disabled={busy || !az} onClick={() => void submit()} data-testid="volume-create-submit">
            {busy ? 'Creating…' : 'Create volume'}
          </button>
        </>
      }
    >
      <Field label="Name">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} />}</Field>
      <div className="row">
        <Field label="Size (GiB)">
          {(id) => <input id={id} type="number" min={1} max={16384} className="narrow" value={size} onChange={(e) => setSize(Number(e.target.value))} data-testid="volume-size" />}
        </Field>
        <Field label="Volume type">
          {(id) => (
            <select id={id} value={type} onChange={(e) => setType(e.target.value)}>
              {TYPES.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          )}
        </Field>
      </div>
      <Field label="Availability zone">
        {(id) => (
          <select id={id} value={az} onChange={(e) => setZone(e.target.value)} data-testid="volume-zone">
            {(zones.data?.AvailabilityZones ?? []).map((z) => (
              <option key={z.ZoneName}>{z.ZoneName}</option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Snapshot ID (optional)">{(id) => <input id={id} value={snapshot} onChange={(e) => setSnapshot(e.target.value)} placeholder="snap-…" />}</Field>
      <ErrorBox error={error ?? zones.error} />
    </Modal>
  );
}

function AttachVolume({ volume, onClose, onDone }: { volume: Volume; onClose: () => void; onDone: () => void }) {
  const instances = useQuery(
    (c) => describeAllInstances(c, [{ Name: 'availability-zone', Values: [volume.AvailabilityZone ?? ''] }, { Name: 'instance-state-name', Values: ['running', 'stopped'] }]),
    [volume.VolumeId],
  );
  const [instanceId, setInstanceId] = useState('');
  /** '' until typed: then the chosen instance's first free device is offered. */
  const [typed, setTyped] = useState('');
  const { run, busy, error } = useAction();
  const chosen = instanceId || instances.data?.[0]?.InstanceId || '';
  const target = instances.data?.find((i) => i.InstanceId === chosen);
  const taken = [target?.RootDeviceName ?? '', ...(target?.BlockDeviceMappings ?? []).map((b) => b.DeviceName ?? '')];
  const device = typed || nextDeviceName(taken) || '';
  return (
    <Modal
      title={`Attach ${volume.VolumeId}`}
      onClose={onClose}
      testid="volume-attach-dialog"
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
              if (await run((c) => c.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: chosen, Device: device })))) onDone();
            }}
            data-testid="volume-attach-submit"
          >
            Attach
          </button>
        </>
      }
    >
      <Field label={`Instance (in ${volume.AvailabilityZone})`}>
        {(id) => (
          <select id={id} value={chosen} onChange={(e) => setInstanceId(e.target.value)} data-testid="volume-attach-instance">
            {instances.data?.length === 0 && <option value="">No running or stopped instance in this zone</option>}
            {(instances.data ?? []).map((i) => (
              <option key={i.InstanceId} value={i.InstanceId}>
                {i.InstanceId} {nameOf(i.Tags) && `(${nameOf(i.Tags)})`} — {i.State?.Name}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Device name" hint={taken.filter(Boolean).length ? `In use on ${chosen}: ${taken.filter(Boolean).join(', ')}.` : undefined}>
        {(id) => <input id={id} value={device} onChange={(e) => setTyped(e.target.value)} data-testid="volume-attach-device" />}
      </Field>
      <ErrorBox error={error ?? instances.error} />
    </Modal>
  );
}

export function SnapshotVolume({ volumeId, onClose, onDone }: { volumeId?: string; onClose: () => void; onDone: (id: string) => void }) {
  const vols = useQuery((c) => c.send(new DescribeVolumesCommand({})), []);
  const [vid, setVid] = useState(volumeId ?? '');
  const [description, setDescription] = useState('');
  const { run, busy, error } = useAction();
  const chosen = vid || vols.data?.Volumes?.[0]?.VolumeId || '';
  return (
    <Modal
      title="Create snapshot"
      onClose={onClose}
      testid="snapshot-create-dialog"
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
              const out = await run((c) => c.send(new CreateSnapshotCommand({ VolumeId: chosen, Description: description || undefined })));
              if (out?.SnapshotId) onDone(out.SnapshotId);
            }}
            data-testid="snapshot-create-submit"
          >
            Create snapshot
          </button>
        </>
      }
    >
      <Field label="Volume">
        {(id) => (
          <select id={id} value={chosen} onChange={(e) => setVid(e.target.value)} data-testid="snapshot-volume">
            {(vols.data?.Volumes ?? []).map((v) => (
              <option key={v.VolumeId} value={v.VolumeId}>
                {v.VolumeId} ({v.Size} GiB, {v.State})
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Description">{(id) => <input id={id} value={description} onChange={(e) => setDescription(e.target.value)} />}</Field>
      <ErrorBox error={error ?? vols.error} />
    </Modal>
  );
}
