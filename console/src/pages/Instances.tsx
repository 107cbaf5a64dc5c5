import {
  CreateImageCommand, DescribeVolumesCommand, GetConsoleOutputCommand, RebootInstancesCommand, StartInstancesCommand,
  StopInstancesCommand, TerminateInstancesCommand, type Instance,
} from '@aws-sdk/client-ec2';
import { useEffect, useMemo, useRef, useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ConfirmDialog, ErrorBox, Field, KeyValues, Modal, Notice, PageHeader, Refreshing, StateBadge, Tabs } from '../components/ui';
import { cleanConsoleText, decodeBase64Utf8 } from '../lib/encoding';
import { describeAllInstances } from '../lib/ec2list';
import {
  allowedActions, chosenColumns, connectCommands, filterInstances, INSTANCE_COLUMNS, INSTANCE_STATES, stateOf, typesPresent,
  type InstanceColumn,
} from '../lib/instances';
import { href } from '../lib/route';
import { nameOf } from '../lib/tags';
import { formatTime } from '../lib/time';

type Lifecycle = 'start' | 'stop' | 'reboot' | 'terminate';
type DetailTab = 'details' | 'networking' | 'storage' | 'security' | 'tags';

const LIFECYCLE: Record<Lifecycle, { label: string; verb: string; danger: boolean }> = {
  start: { label: 'Start', verb: 'Start', danger: false },
  stop: { label: 'Stop', verb: 'Stop', danger: false },
  reboot: { label: 'Reboot', verb: 'Reboot', danger: false },
  terminate: { label: 'Terminate', verb: 'Terminate', danger: true },
};

/** Where the chosen columns are kept between visits (this browser only). */
const COLUMNS_KEY = 'kiln.console.instanceColumns';

function readColumns(): string | null {
  try {
    return window.localStorage.getItem(COLUMNS_KEY);
  } catch {
    return null;
  }
}

function writeColumns(value: string) {
  try {
    window.localStorage.setItem(COLUMNS_KEY, value);
  } catch {
    // Storage may be off (private windows); the choice then lasts for this page only.
  }
}

export default function Instances({ params }: { params: Record<string, string> }) {
  const q = useQuery((c) => describeAllInstances(c), [], 3000);
  const [text, setText] = useState(params.q ?? '');
  const [state, setState] = useState(params.state ?? 'active');
  const [type, setType] = useState(params.type ?? '');
  const [tag, setTag] = useState(params.tag ?? '');
  const [shown, setShown] = useState<InstanceColumn[]>(() => chosenColumns(readColumns()));
  const [selected, setSelected] = useState<string[]>(params.launched ? params.launched.split(',') : []);
  const [confirm, setConfirm] = useState<Lifecycle | null>(null);
  const [dialog, setDialog] = useState<'image' | 'console' | 'connect' | null>(null);
  const [flash, setFlash] = useState<string | null>(params.launched ? `Launched ${params.launched.split(',').join(', ')}.` : null);
  const action = useAction();

  const all = q.data;
  const rows = useMemo(() => (all ? filterInstances(all, { text, state, type, tag }) : undefined), [all, text, state, type, tag]);
  const types = useMemo(() => typesPresent(all ?? []), [all]);
  const toggleColumn = (key: InstanceColumn, on: boolean) => {
    const next = chosenColumns(JSON.stringify(on ? [...shown, key] : shown.filter((k) => k !== key)));
    setShown(next);
    writeColumns(JSON.stringify(next));
  };
  const chosen = useMemo(() => (all ?? []).filter((i) => selected.includes(i.InstanceId ?? '')), [all, selected]);
  const allowed = allowedActions(chosen);
  const one = chosen.length === 1 ? chosen[0] : undefined;

  const doLifecycle = async (kind: Lifecycle) => {
    const ids = chosen.map((i) => i.InstanceId!);
    const out = await action.run((c) => {
      switch (kind) {
        case 'start':
          return c.send(new StartInstancesCommand({ InstanceIds: ids }));
        case 'stop':
          return c.send(new StopInstancesCommand({ InstanceIds: ids }));
        case 'reboot':
          return c.send(new RebootInstancesCommand({ InstanceIds: ids }));
        case 'terminate':
          return c.send(new TerminateInstancesCommand({ InstanceIds: ids }));
      }
    });
    if (out) {
      setConfirm(null);
      setFlash(`${LIFECYCLE[kind].verb} requested for ${ids.join(', ')}.`);
      q.refresh();
    }
  };

  const render: Record<InstanceColumn, Pick<Column<Instance>, 'render' | 'className'>> = {
    name: { render: (i) => nameOf(i.Tags) || <span className="muted">—</span> },
    id: { render: (i) => <code>{i.InstanceId}</code> },
    state: { render: (i) => <StateBadge state={stateOf(i)} testid="instance-state" /> },
    type: { render: (i) => i.InstanceType },
    ami: { render: (i) => <code>{i.ImageId}</code>, className: 'hide-narrow' },
    public: { render: (i) => i.PublicIpAddress ?? '—' },
    private: { render: (i) => i.PrivateIpAddress ?? '—', className: 'hide-narrow' },
    zone: { render: (i) => i.Placement?.AvailabilityZone ?? '—', className: 'hide-narrow' },
    launch: { render: (i) => <LaunchTime value={i.LaunchTime} />, className: 'hide-narrow' },
    key: { render: (i) => i.KeyName ?? '—', className: 'hide-narrow' },
    vpc: { render: (i) => (i.VpcId ? <code>{i.VpcId}</code> : '—'), className: 'hide-narrow' },
    subnet: { render: (i) => (i.SubnetId ? <code>{i.SubnetId}</code> : '—'), className: 'hide-narrow' },
    groups: { render: (i) => (i.SecurityGroups ?? []).map((g) => g.GroupName).join(', ') || '—', className: 'hide-narrow' },
    arch: { render: (i) => i.Architecture ?? '—', className: 'hide-narrow' },
    dns: { render: (i) => i.PublicDnsName || '—', className: 'hide-narrow' },
  };
  const columns: Column<Instance>[] = INSTANCE_COLUMNS.filter((c) => shown.includes(c.key)).map((c) => ({
    key: c.key,
    header: c.header,
    ...render[c.key],
  }));

  return (
    <section>
      <PageHeader
        title="Instances"
        status={
          <>
            {rows && all && (
              <span className="muted">
                {rows.length} of {all.length}
              </span>
            )}{' '}
            <Refreshing on={q.refreshing && !q.loading} />
          </>
        }
      >
        <a className="btn btn-primary" href={href('launch')} data-testid="launch-link">
          Launch instances
        </a>
      </PageHeader>

      <div className="toolbar">
        <Field label="Search">
          {(id) => (
            <input id={id} type="search" placeholder="Name, ID, type, IP, tag…" value={text} onChange={(e) => setText(e.target.value)} data-testid="instance-search" />
          )}
        </Field>
        <Field label="State">
          {(id) => (
            <select id={id} value={state} onChange={(e) => setState(e.target.value)} data-testid="state-filter">
              <option value="active">All but terminated</option>
              <option value="">All states</option>
              {INSTANCE_STATES.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Type">
          {(id) => (
            <select id={id} value={type} onChange={(e) => setType(e.target.value)} data-testid="type-filter">
              <option value="">All types</option>
              {[...new Set([...types, ...(type ? [type] : [])])].map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Tag">
          {(id) => (
            <input id={id} type="search" placeholder="key or key=value" value={tag} onChange={(e) => setTag(e.target.value)} data-testid="tag-filter" />
          )}
        </Field>
        <details className="column-chooser" data-testid="column-chooser">
          <summary>Columns</summary>
          <fieldset>
            <legend className="sr-only">Columns shown</legend>
            {INSTANCE_COLUMNS.map((c) => (
              <label key={c.key} className="check">
                <input
                  type="checkbox"
                  checked={shown.includes(c.key)}
                  disabled={c.key === 'id'}
                  onChange={(e) => toggleColumn(c.key, e.target.checked)}
                  data-testid={`column-${c.key}`}
                />{' '}
                {c.header}
              </label>
            ))}
          </fieldset>
        </details>
      </div>

      <div className="actionbar" role="toolbar" aria-label="Instance actions">
        {(Object.keys(LIFECYCLE) as Lifecycle[]).map((k) => (
          <button
            key={k}
            type="button"
            className={k === 'terminate' ? 'btn-danger-outline' : undefined}
            disabled={!allowed[k] || action.busy}
            onClick={() => {
              action.setError(undefined);
              setConfirm(k);
            }}
            data-testid={`action-${k}`}
          >
            {LIFECYCLE[k].label}
          </button>
        ))}
        <button type="button" disabled={!allowed.createImage} onClick={() => setDialog('image')} data-testid="action-create-image">
          Create image
        </button>
        <button type="button" disabled={!allowed.console} onClick={() => setDialog('console')} data-testid="action-console">
          Console output
        </button>
        <button type="button" disabled={!allowed.connect} onClick={() => setDialog('connect')} data-testid="action-connect">
          Connect
        </button>
      </div>

      <div className="flash-slot">
        {flash && (
          <Notice kind="ok" testid="flash">
            {flash}{' '}
            <button type="button" className="btn-link" onClick={() => setFlash(null)}>
              Dismiss
            </button>
          </Notice>
        )}
      </div>

      <DataTable
        caption="Instances"
        testid="instances-table"
        rows={rows}
        columns={columns}
        rowKey={(i) => i.InstanceId ?? ''}
        loading={q.loading}
        error={q.error}
        empty={
          all && all.length > 0 ? (
            `No instance matches the search and filters (${all.length} in all).`
          ) : (
            <>
              No instances yet. <a href={href('launch')}>Launch one</a>.
            </>
          )
        }
        selection="multi"
        selected={selected}
        onSelect={setSelected}
        rowProps={(i) => ({ 'data-testid': 'instance-row', 'data-instance-id': i.InstanceId, 'data-state': stateOf(i) })}
      />

      {one ? <InstanceDetails instance={one} /> : <p className="muted details-placeholder">{chosen.length > 1 ? `${chosen.length} instances selected.` : 'Select an instance to see its details.'}</p>}

      {confirm && (
        <ConfirmDialog
          title={`${LIFECYCLE[confirm].verb} ${chosen.length === 1 ? 'instance' : `${chosen.length} instances`}?`}
          confirmLabel={LIFECYCLE[confirm].verb}
          danger={LIFECYCLE[confirm].danger}
          busy={action.busy}
          error={action.error}
          onConfirm={() => void doLifecycle(confirm)}
          onCancel={() => setConfirm(null)}
        >
          <p>
            {LIFECYCLE[confirm].verb} {chosen.map((i) => i.InstanceId).join(', ')}?
          </p>
          {confirm === 'terminate' && <p className="warn-text">Terminated instances cannot be started again; volumes deleted on termination are lost.</p>}
        </ConfirmDialog>
      )}
      {dialog === 'image' && one && <CreateImageDialog instance={one} onClose={() => setDialog(null)} onDone={(id) => { setDialog(null); setFlash(`Creating image ${id}. It appears under AMIs → My AMIs.`); }} />}
      {dialog === 'console' && one && <ConsoleOutputDialog instanceId={one.InstanceId!} onClose={() => setDialog(null)} />}
      {dialog === 'connect' && one && <ConnectDialog instance={one} onClose={() => setDialog(null)} />}
    </section>
  );
}

/** Date and time on two lines so the table fits 1280 px. */
function LaunchTime({ value }: { value: Date | undefined }) {
  const t = formatTime(value);
  const cut = t.indexOf(' ');
  if (cut < 0) return <>{t}</>;
  return (
    <span className="nowrap">
      {t.slice(0, cut)}
      <br />
      <span className="muted">{t.slice(cut + 1)}</span>
    </span>
  );
}

function CreateImageDialog({ instance, onClose, onDone }: { instance: Instance; onClose: () => void; onDone: (id: string) => void }) {
  const [name, setName] = useState(`${nameOf(instance.Tags) || instance.InstanceId}-image`);
  const [description, setDescription] = useState('');
  const [noReboot, setNoReboot] = useState(false);
  const { run, busy, error } = useAction();
  const submit = async () => {
    const out = await run((c) =>
      c.send(new CreateImageCommand({ InstanceId: instance.InstanceId, Name: name.trim(), Description: description || undefined, NoReboot: noReboot })),
    );
    if (out?.ImageId) onDone(out.ImageId);
  };
  return (
    <Modal
      title={`Create image from ${instance.InstanceId}`}
      onClose={onClose}
      testid="create-image-dialog"
      footer={
        <>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="create-image-form" className="btn-primary" disabled={busy || !name.trim()} data-testid="create-image-submit">
            {busy ? 'Creating…' : 'Create image'}
          </button>
        </>
      }
    >
      <form
        id="create-image-form"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <Field label="Image name" hint="3–128 characters: letters, numbers, ( ) [ ] . / - ' @ _ and spaces.">
          {(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} required maxLength={128} data-testid="image-name" />}
        </Field>
        <Field label="Description">{(id) => <input id={id} value={description} onChange={(e) => setDescription(e.target.value)} maxLength={255} />}</Field>
        <div className="check">
          <input id="no-reboot" type="checkbox" checked={noReboot} onChange={(e) => setNoReboot(e.target.checked)} />
          <label htmlFor="no-reboot">No reboot (the file systems may not be consistent)</label>
        </div>
        <ErrorBox error={error} testid="create-image-error" />
      </form>
    </Modal>
  );
}

function ConsoleOutputDialog({ instanceId, onClose }: { instanceId: string; onClose: () => void }) {
  const q = useQuery((c) => c.send(new GetConsoleOutputCommand({ InstanceId: instanceId })), [instanceId], 2000);
  const text = cleanConsoleText(decodeBase64Utf8(q.data?.Output));
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  useEffect(() => {
    const p = pre.current;
    if (p && stick.current) p.scrollTop = p.scrollHeight;
  }, [text]);
  return (
    <Modal
      title={`Console output: ${instanceId}`}
      onClose={onClose}
      wide
      testid="console-dialog"
      footer={
        <>
          <span className="muted small">
            Refreshed every 2 s{q.data?.Timestamp ? `; as of ${formatTime(q.data.Timestamp)}` : ''}
          </span>
          <button type="button" onClick={onClose} data-testid="console-close">
            Close
          </button>
        </>
      }
    >
      <ErrorBox error={q.error} />
      <pre
        ref={pre}
        className="console"
        data-testid="console-output"
        tabIndex={0}
        aria-label="Serial console output"
        onScroll={(e) => {
          const p = e.currentTarget;
          stick.current = p.scrollTop + p.clientHeight >= p.scrollHeight - 20;
        }}
      >
        {q.loading ? 'Loading…' : text || '(no output yet)'}
      </pre>
    </Modal>
  );
}

function ConnectDialog({ instance, onClose }: { instance: Instance; onClose: () => void }) {
  const cmds = connectCommands(instance);
  return (
    <Modal title={`Connect to ${instance.InstanceId}`} onClose={onClose} testid="connect-dialog" footer={<button type="button" onClick={onClose}>Close</button>}>
      <h3>SSH client</h3>
      {cmds.ssh ? (
        <>
          <p>With the private key of {instance.KeyName ? <strong>{instance.KeyName}</strong> : 'the key pair'} (chmod 400 it first):</p>
          <pre className="cmd" data-testid="connect-ssh">{cmds.ssh}</pre>
        </>
      ) : (
        <p className="muted">The instance has no public IP address. Use kiln ssh, or associate an Elastic IP.</p>
      )}
      <h3>Kiln CLI</h3>
      <p>Finds the address and the saved key for you:</p>
      <pre className="cmd" data-testid="connect-kiln">{cmds.kiln}</pre>
      {!instance.KeyName && <p className="warn-text">This instance was launched without a key pair; SSH needs one.</p>}
    </Modal>
  );
}

function InstanceDetails({ instance: i }: { instance: Instance }) {
  const [tab, setTab] = useState<DetailTab>('details');
  const volumeIds = (i.BlockDeviceMappings ?? []).map((b) => b.Ebs?.VolumeId).filter((v): v is string => !!v);
  const vols = useQuery(
    async (c) => (volumeIds.length ? ((await c.send(new DescribeVolumesCommand({ VolumeIds: volumeIds }))).Volumes ?? []) : []),
    [tab === 'storage' ? volumeIds.join(',') : ''],
  );
  return (
    <section className="details" aria-label={`Details of ${i.InstanceId}`} data-testid="instance-details">
      <h2>
        {i.InstanceId} {nameOf(i.Tags) && <span className="muted">({nameOf(i.Tags)})</span>}
      </h2>
      <Tabs
        label="Instance details"
        value={tab}
        onChange={setTab}
        testidPrefix="detail-tab"
        tabs={[
          { id: 'details', label: 'Details' },
          { id: 'networking', label: 'Networking' },
          { id: 'storage', label: 'Storage' },
          { id: 'security', label: 'Security groups' },
          { id: 'tags', label: 'Tags' },
        ]}
      />
      <div className="tab-panel" role="tabpanel">
        {tab === 'details' && (
          <KeyValues
            items={[
              ['Instance ID', <code>{i.InstanceId}</code>],
              ['State', <StateBadge state={stateOf(i)} />],
              ['State reason', i.StateReason?.Message ?? i.StateTransitionReason],
              ['Instance type', i.InstanceType],
              ['AMI', <code>{i.ImageId}</code>],
              ['Architecture', i.Architecture],
              ['Key pair', i.KeyName],
              ['Launch time', formatTime(i.LaunchTime)],
              ['Platform', i.PlatformDetails],
              ['IMDSv2', i.MetadataOptions?.HttpTokens === 'required' ? 'Required' : 'Optional'],
              ['Metadata endpoint', i.MetadataOptions?.HttpEndpoint],
              ['vCPUs', i.CpuOptions ? String((i.CpuOptions.CoreCount ?? 0) * (i.CpuOptions.ThreadsPerCore ?? 1)) : undefined],
            ]}
          />
        )}
        {tab === 'networking' && (
          <>
            <KeyValues
              items={[
                ['VPC', i.VpcId],
                ['Subnet', i.SubnetId],
                ['Availability zone', i.Placement?.AvailabilityZone],
                ['Public IPv4', i.PublicIpAddress],
                ['Public DNS', i.PublicDnsName],
                ['Private IPv4', i.PrivateIpAddress],
                ['Private DNS', i.PrivateDnsName],
              ]}
            />
            <h3>Network interfaces</h3>
            <ul className="plain">
              {(i.NetworkInterfaces ?? []).map((n) => (
                <li key={n.NetworkInterfaceId}>
                  <code>{n.NetworkInterfaceId}</code> — {n.PrivateIpAddress}
                  {n.Association?.PublicIp ? ` / ${n.Association.PublicIp}` : ''} · {n.MacAddress}
                </li>
              ))}
              {(i.NetworkInterfaces ?? []).length === 0 && <li className="muted">None</li>}
            </ul>
          </>
        )}
        {tab === 'storage' && (
          <>
            <KeyValues items={[['Root device', i.RootDeviceName], ['Root device type', i.RootDeviceType]]} />
            <table className="table">
              <caption className="sr-only">Block devices</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Volume</th>
                  <th scope="col">Size</th>
                  <th scope="col">Type</th>
                  <th scope="col">Delete on termination</th>
                  <th scope="col">Attached</th>
                </tr>
              </thead>
              <tbody>
                {(i.BlockDeviceMappings ?? []).map((b) => {
                  const v = vols.data?.find((x) => x.VolumeId === b.Ebs?.VolumeId);
                  return (
                    <tr key={b.DeviceName}>
                      <td>{b.DeviceName}</td>
                      <td>
                        <code>{b.Ebs?.VolumeId}</code>
                      </td>
                      <td>{v?.Size !== undefined ? `${v.Size} GiB` : '…'}</td>
                      <td>{v?.VolumeType ?? '…'}</td>
                      <td>{b.Ebs?.DeleteOnTermination ? 'Yes' : 'No'}</td>
                      <td>{formatTime(b.Ebs?.AttachTime)}</td>
                    </tr>
                  );
                })}
                {(i.BlockDeviceMappings ?? []).length === 0 && (
                  <tr>
                    <td colSpan={6} className="table-note">
                      No block devices.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </>
        )}
        {tab === 'security' && (
          <ul className="plain">
            {(i.SecurityGroups ?? []).map((g) => (
              <li key={g.GroupId}>
                <a href={href('security-groups', { id: g.GroupId })}>
                  {g.GroupName} (<code>{g.GroupId}</code>)
                </a>
              </li>
            ))}
            {(i.SecurityGroups ?? []).length === 0 && <li className="muted">None</li>}
          </ul>
        )}
        {tab === 'tags' && (
          <table className="table">
            <caption className="sr-only">Tags</caption>
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Value</th>
              </tr>
            </thead>
            <tbody>
              {(i.Tags ?? []).map((t) => (
                <tr key={t.Key}>
                  <td>{t.Key}</td>
                  <td>{t.Value}</td>
                </tr>
              ))}
              {(i.Tags ?? []).length === 0 && (
                <tr>
                  <td colSpan={2} className="table-note">
                    No tags.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}
