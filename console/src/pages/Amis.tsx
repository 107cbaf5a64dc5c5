import {
  CopyImageCommand, DeregisterImageCommand, DescribeImageAttributeCommand, DescribeImagesCommand, DescribeRegionsCommand,
  ModifyImageAttributeCommand, type Image,
} from '@aws-sdk/client-ec2';
import { useMemo, useState } from 'react';
import { useAction, useApi, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ConfirmDialog, ErrorBox, Field, KeyValues, Modal, Notice, PageHeader, Refreshing, StateBadge, Tabs } from '../components/ui';
import { CATALOG_TABS, catalogQuery, isAccountId, isLaunchable, ownerLabel, searchImages, type CatalogTab } from '../lib/amis';
import { href } from '../lib/route';
import { formatTime } from '../lib/time';

export default function Amis({ params }: { params: Record<string, string> }) {
  const api = useApi();
  const [tab, setTab] = useState<CatalogTab>((CATALOG_TABS.find((t) => t.id === params.tab)?.id ?? 'quickstart') as CatalogTab);
  const [text, setText] = useState(params.q ?? '');
  const [selected, setSelected] = useState<string[]>([]);
  const [dialog, setDialog] = useState<'deregister' | 'share' | 'copy' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const q = useQuery((c) => c.send(new DescribeImagesCommand(catalogQuery(tab))), [tab], tab === 'mine' ? 3000 : 15000);
  const rows = useMemo(() => (q.data ? searchImages(q.data.Images ?? [], text) : undefined), [q.data, text]);
  const image = rows?.find((im) => im.ImageId === selected[0]);
  const mine = image?.OwnerId === api.session.accountId;

  const columns: Column<Image>[] = [
    { key: 'name', header: 'Name', render: (im) => im.Name },
    { key: 'id', header: 'AMI ID', render: (im) => <code>{im.ImageId}</code> },
    { key: 'state', header: 'State', render: (im) => <StateBadge state={im.State} testid="ami-state" /> },
    { key: 'arch', header: 'Architecture', render: (im) => im.Architecture },
    { key: 'owner', header: 'Owner', render: (im) => ownerLabel(im, api.session.accountId), className: 'hide-narrow' },
    { key: 'public', header: 'Visibility', render: (im) => (im.Public ? 'Public' : 'Private'), className: 'hide-narrow' },
    { key: 'created', header: 'Created', render: (im) => formatTime(im.CreationDate), className: 'hide-narrow nowrap' },
  ];

  return (
    <section>
      <PageHeader title="AMIs" status={<Refreshing on={q.refreshing && !q.loading} />} />
      <Tabs label="Catalog" tabs={CATALOG_TABS} value={tab} onChange={(t) => { setTab(t); setSelected([]); }} testidPrefix="ami-tab" />
      <div className="toolbar">
        <Field label="Search">
          {(id) => <input id={id} type="search" value={text} onChange={(e) => setText(e.target.value)} placeholder="Name, ID, architecture…" data-testid="ami-search" />}
        </Field>
      </div>
      <div className="actionbar" role="toolbar" aria-label="AMI actions">
        <a
          className={`btn btn-primary${image && isLaunchable(image) ? '' : ' btn-disabled'}`}
          href={image && isLaunchable(image) ? href('launch', { ami: image.ImageId }) : undefined}
          aria-disabled={!(image && isLaunchable(image))}
          data-testid="action-launch-ami"
        >
          Launch instance from AMI
        </a>
        <button type="button" disabled={!image || !mine} onClick={() => setDialog('share')} data-testid="action-share">
          Edit permissions
        </button>
        <button type="button" disabled={!image || !isLaunchable(image)} onClick={() => setDialog('copy')} data-testid="action-copy">
          Copy to region
        </button>
        <button type="button" className="btn-danger-outline" disabled={!image || !mine} onClick={() => setDialog('deregister')} data-testid="action-deregister">
          Deregister
        </button>
      </div>
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="AMIs"
        testid="amis-table"
        rows={rows}
        columns={columns}
        rowKey={(im) => im.ImageId ?? ''}
        loading={q.loading}
        error={q.error}
        empty={tab === 'mine' ? 'You own no AMIs. Create one from an instance (Instances → Create image).' : 'No AMIs here.'}
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(im) => ({ 'data-testid': 'ami-row', 'data-ami-id': im.ImageId, 'data-ami-name': im.Name, 'data-state': im.State })}
      />
      {image ? <AmiDetails image={image} mine={mine} /> : <p className="muted details-placeholder">Select an AMI to see its details.</p>}
      {dialog === 'deregister' && image && (
        <Deregister image={image} onClose={() => setDialog(null)} onDone={() => { setDialog(null); setSelected([]); setFlash(`Deregistered ${image.ImageId}.`); q.refresh(); }} />
      )}
      {dialog === 'share' && image && <Share image={image} onClose={() => { setDialog(null); q.refresh(); }} />}
      {dialog === 'copy' && image && <Copy image={image} onClose={() => setDialog(null)} onDone={(id, r) => { setDialog(null); setFlash(`Copying to ${r} as ${id}.`); }} />}
    </section>
  );
}

function AmiDetails({ image: im, mine }: { image: Image; mine: boolean }) {
  return (
    <section className="details" aria-label={`Details of ${im.ImageId}`} data-testid="ami-details">
      <h2>{im.Name}</h2>
      <KeyValues
        items={[
          ['AMI ID', <code>{im.ImageId}</code>],
          ['State', <StateBadge state={im.State} />],
          ['State reason', im.StateReason?.Message],
          ['Description', im.Description],
          ['Architecture', im.Architecture],
          ['Owner', im.ImageOwnerAlias ?? im.OwnerId],
          ['Visibility', im.Public ? 'Public' : 'Private'],
          ['Platform', im.PlatformDetails],
          ['Virtualization', im.VirtualizationType],
          ['Boot mode', im.BootMode],
          ['Root device', `${im.RootDeviceName ?? ''} (${im.RootDeviceType ?? ''})`],
          ['Created', formatTime(im.CreationDate)],
          ['Source', mine ? 'Owned by you' : im.ImageLocation],
        ]}
      />
      <h3>Block devices</h3>
      <table className="table">
        <caption className="sr-only">Block devices</caption>
        <thead>
          <tr>
            <th scope="col">Device</th>
            <th scope="col">Snapshot</th>
            <th scope="col">Size</th>
            <th scope="col">Type</th>
            <th scope="col">Delete on termination</th>
          </tr>
        </thead>
        <tbody>
          {(im.BlockDeviceMappings ?? []).map((b) => (
            <tr key={b.DeviceName}>
              <td>{b.DeviceName}</td>
              <td>{b.Ebs?.SnapshotId ? <code>{b.Ebs.SnapshotId}</code> : b.VirtualName ?? '—'}</td>
              <td>{b.Ebs?.VolumeSize !== undefined ? `${b.Ebs.VolumeSize} GiB` : '—'}</td>
              <td>{b.Ebs?.VolumeType ?? '—'}</td>
              <td>{b.Ebs ? (b.Ebs.DeleteOnTermination ? 'Yes' : 'No') : '—'}</td>
            </tr>
          ))}
          {(im.BlockDeviceMappings ?? []).length === 0 && (
            <tr>
              <td colSpan={5} className="table-note">
                No block devices.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

function Deregister({ image, onClose, onDone }: { image: Image; onClose: () => void; onDone: () => void }) {
  const { run, busy, error } = useAction();
  return (
    <ConfirmDialog
      title="Deregister AMI?"
      confirmLabel="Deregister"
      danger
      busy={busy}
      error={error}
      onCancel={onClose}
      onConfirm={async () => {
        if (await run((c) => c.send(new DeregisterImageCommand({ ImageId: image.ImageId })))) onDone();
      }}
    >
      <p>
        Deregister {image.Name} (<code>{image.ImageId}</code>)? Instances can no longer be launched from it; its snapshots stay.
      </p>
    </ConfirmDialog>
  );
}

function Share({ image, onClose }: { image: Image; onClose: () => void }) {
  const perms = useQuery((c) => c.send(new DescribeImageAttributeCommand({ ImageId: image.ImageId, Attribute: 'launchPermission' })), [image.ImageId]);
  const { run, busy, error } = useAction();
  const [account, setAccount] = useState('');
  const list = perms.data?.LaunchPermissions ?? [];
  const isPublic = list.some((p) => p.Group === 'all');
  const modify = async (op: 'Add' | 'Remove', p: { UserId?: string; Group?: 'all' }) => {
    const ok = await run((c) => c.send(new ModifyImageAttributeCommand({ ImageId: image.ImageId, LaunchPermission: { [op]: [p] } })));
    if (ok) {
      setAccount('');
      perms.refresh();
    }
  };
  return (
    <Modal title={`Permissions of ${image.ImageId}`} onClose={onClose} testid="share-dialog" footer={<button type="button" onClick={onClose}>Close</button>}>
      <p>
        The AMI is <strong>{isPublic ? 'public' : 'private'}</strong>.{' '}
        <button type="button" disabled={busy || perms.loading} onClick={() => void modify(isPublic ? 'Remove' : 'Add', { Group: 'all' })} data-testid="toggle-public">
          {isPublic ? 'Make private' : 'Make public'}
        </button>
      </p>
      <h3>Shared with accounts</h3>
      <ul className="plain" data-testid="shared-accounts">
        {list.filter((p) => p.UserId).map((p) => (
          <li key={p.UserId}>
            <code>{p.UserId}</code>{' '}
            <button type="button" className="btn-link" disabled={busy} onClick={() => void modify('Remove', { UserId: p.UserId })}>
              Remove
            </button>
          </li>
        ))}
        {!perms.loading && list.filter((p) => p.UserId).length === 0 && <li className="muted">Not shared with any account.</li>}
      </ul>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void modify('Add', { UserId: account.trim() });
        }}
      >
        <Field label="Account ID" hint="12 digits.">
          {(id) => <input id={id} value={account} onChange={(e) => setAccount(e.target.value)} inputMode="numeric" data-testid="share-account" />}
        </Field>
        <div className="field field-button">
          <button type="submit" disabled={busy || !isAccountId(account)} data-testid="share-add">
            Share
          </button>
        </div>
      </form>
      <ErrorBox error={error ?? perms.error} />
    </Modal>
  );
}

function Copy({ image, onClose, onDone }: { image: Image; onClose: () => void; onDone: (id: string, region: string) => void }) {
  const api = useApi();
  const regions = useQuery((c) => c.send(new DescribeRegionsCommand({})), []);
  const [region, setRegion] = useState(api.session.region === 'us-east-1' ? 'us-west-2' : 'us-east-1');
  const [name, setName] = useState(`${image.Name ?? image.ImageId}-copy`);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const out = await api.callIn(region, (c) =>
        c.send(new CopyImageCommand({ SourceImageId: image.ImageId, SourceRegion: api.session.region, Name: name.trim(), Description: image.Description })),
      );
      onDone(out.ImageId ?? '?', region);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      title={`Copy ${image.ImageId} to another region`}
      onClose={onClose}
      testid="copy-dialog"
      footer={
        <>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="button" className="btn-primary" disabled={busy || !name.trim()} onClick={() => void submit()} data-testid="copy-submit">
            {busy ? 'Copying…' : 'Copy AMI'}
          </button>
        </>
      }
    >
      <Field label="Destination region">
        {(id) => (
          <select id={id} value={region} onChange={(e) => setRegion(e.target.value)} data-testid="copy-region">
            {(regions.data?.Regions ?? [{ RegionName: region }]).map((r) => r.RegionName!).sort().map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Name of the copy">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} maxLength={128} />}</Field>
      <ErrorBox error={error} />
    </Modal>
  );
}
