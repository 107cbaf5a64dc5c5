import {
  AuthorizeSecurityGroupEgressCommand, AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DeleteSecurityGroupCommand,
  DescribeSecurityGroupsCommand, DescribeVpcsCommand, RevokeSecurityGroupEgressCommand, RevokeSecurityGroupIngressCommand,
  type IpPermission, type SecurityGroup,
} from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ConfirmDialog, ErrorBox, Field, Notice, PageHeader, Tabs } from '../components/ui';
import { permissionFromForm, ruleRows, type RuleForm } from '../lib/rules';

export default function SecurityGroups({ params }: { params: Record<string, string> }) {
  const q = useQuery((c) => c.send(new DescribeSecurityGroupsCommand({})), []);
  const [selected, setSelected] = useState<string[]>(params.id ? [params.id] : []);
  const [creating, setCreating] = useState(false);
  const [confirm, setConfirm] = useState(false);
  const [flash, setFlash] = useState<string | null>(null);
  const del = useAction();
  const group = q.data?.SecurityGroups?.find((g) => g.GroupId === selected[0]);

  const columns: Column<SecurityGroup>[] = [
    { key: 'name', header: 'Name', render: (g) => g.GroupName },
    { key: 'id', header: 'Group ID', render: (g) => <code>{g.GroupId}</code> },
    { key: 'vpc', header: 'VPC', render: (g) => g.VpcId, className: 'hide-narrow' },
    { key: 'desc', header: 'Description', render: (g) => g.Description, className: 'hide-narrow' },
    { key: 'in', header: 'Inbound', render: (g) => ruleRows(g.IpPermissions).length },
    { key: 'out', header: 'Outbound', render: (g) => ruleRows(g.IpPermissionsEgress).length },
  ];

  return (
    <section>
      <PageHeader title="Security groups">
        <button type="button" className="btn-primary" onClick={() => setCreating((v) => !v)} aria-expanded={creating} data-testid="sg-create-open">
          Create security group
        </button>
        <button type="button" className="btn-danger-outline" disabled={!group || group.GroupName === 'default'} onClick={() => setConfirm(true)} data-testid="sg-delete">
          Delete
        </button>
      </PageHeader>
      {creating && (
        <CreateGroup
          onDone={(id) => {
            setCreating(false);
            setSelected([id]);
            q.refresh();
          }}
        />
      )}
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="Security groups"
        testid="sg-table"
        rows={q.data?.SecurityGroups}
        columns={columns}
        rowKey={(g) => g.GroupId ?? ''}
        loading={q.loading}
        error={q.error}
        empty="No security groups."
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(g) => ({ 'data-testid': 'sg-row', 'data-group-id': g.GroupId, 'data-group-name': g.GroupName })}
      />
      {group ? <RuleEditor group={group} onChanged={q.refresh} /> : <p className="muted details-placeholder">Select a security group to edit its rules.</p>}
      {confirm && group && (
        <ConfirmDialog
          title="Delete security group?"
          confirmLabel="Delete"
          danger
          busy={del.busy}
          error={del.error}
          onCancel={() => setConfirm(false)}
          onConfirm={async () => {
            if (await del.run((c) => c.send(new DeleteSecurityGroupCommand({ GroupId: group.GroupId })))) {
              setConfirm(false);
              setSelected([]);
              setFlash(`Deleted ${group.GroupName}.`);
              q.refresh();
            }
          }}
        >
          <p>
            Delete {group.GroupName} (<code>{group.GroupId}</code>)? Groups used by instances cannot be deleted.
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}

function CreateGroup({ onDone }: { onDone: (id: string) => void }) {
  const vpcs = useQuery((c) => c.send(new DescribeVpcsCommand({})), []);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [vpcId, setVpcId] = useState('');
  const { run, busy, error } = useAction();
  const vpc = vpcId || vpcs.data?.Vpcs?.find((v) => v.IsDefault)?.VpcId || '';
  return (
    <form
      className="panel"
      onSubmit={async (e) => {
        e.preventDefault();
        const out = await run((c) => c.send(new CreateSecurityGroupCommand({ GroupName: name.trim(), Description: description.trim() || name.trim(), VpcId: vpc || undefined })));
        if (out?.GroupId) onDone(out.GroupId);
      }}
    >
      <div className="row">
        <Field label="Name">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} required data-testid="sg-create-name" />}</Field>
        <Field label="Description">{(id) => <input id={id} value={description} onChange={(e) => setDescription(e.target.value)} />}</Field>
        <Field label="VPC">
          {(id) => (
            <select id={id} value={vpc} onChange={(e) => setVpcId(e.target.value)}>
              {(vpcs.data?.Vpcs ?? []).map((v) => (
                <option key={v.VpcId} value={v.VpcId}>
                  {v.VpcId} {v.IsDefault ? '(default)' : ''}
                </option>
              ))}
            </select>
          )}
        </Field>
      </div>
      <button type="submit" className="btn-primary" disabled={busy || !name.trim()} data-testid="sg-create-submit">
        Create
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

function RuleEditor({ group, onChanged }: { group: SecurityGroup; onChanged: () => void }) {
  const [dir, setDir] = useState<'in' | 'out'>('in');
  const { run, busy, error } = useAction();
  const rows = ruleRows(dir === 'in' ? group.IpPermissions : group.IpPermissionsEgress);
  const revoke = async (p: IpPermission) => {
    const ok = await run((c) =>
      dir === 'in'
        ? c.send(new RevokeSecurityGroupIngressCommand({ GroupId: group.GroupId, IpPermissions: [p] }))
        : c.send(new RevokeSecurityGroupEgressCommand({ GroupId: group.GroupId, IpPermissions: [p] })),
    );
    if (ok) onChanged();
  };
  const authorize = async (p: IpPermission) => {
    const ok = await run((c) =>
      dir === 'in'
        ? c.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: group.GroupId, IpPermissions: [p] }))
        : c.send(new AuthorizeSecurityGroupEgressCommand({ GroupId: group.GroupId, IpPermissions: [p] })),
    );
    if (ok) onChanged();
    return !!ok;
  };
  return (
    <section className="details" aria-label={`Rules of ${group.GroupId}`} data-testid="sg-rules">
      <h2>
        {group.GroupName} <code className="muted">{group.GroupId}</code>
      </h2>
      <Tabs
        label="Rule direction"
        value={dir}
        onChange={setDir}
        testidPrefix="rules-tab"
        tabs={[
          { id: 'in', label: `Inbound rules (${ruleRows(group.IpPermissions).length})` },
          { id: 'out', label: `Outbound rules (${ruleRows(group.IpPermissionsEgress).length})` },
        ]}
      />
      <table className="table">
        <caption className="sr-only">{dir === 'in' ? 'Inbound rules' : 'Outbound rules'}</caption>
        <thead>
          <tr>
            <th scope="col">Protocol</th>
            <th scope="col">Ports</th>
            <th scope="col">{dir === 'in' ? 'Source' : 'Destination'}</th>
            <th scope="col">Description</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.key} data-testid="rule-row">
              <td>{r.protocol}</td>
              <td>{r.ports}</td>
              <td>
                <code>{r.source}</code>
              </td>
              <td>{r.description}</td>
              <td>
                <button type="button" className="btn-link" disabled={busy} onClick={() => void revoke(r.permission)} aria-label={`Remove rule ${r.protocol} ${r.ports} ${r.source}`}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
          {rows.length === 0 && (
            <tr>
              <td colSpan={5} className="table-note">
                No {dir === 'in' ? 'inbound' : 'outbound'} rules.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <AddRule key={dir} direction={dir} busy={busy} onAdd={authorize} />
      <ErrorBox error={error} testid="rule-error" />
    </section>
  );
}

function AddRule({ direction, busy, onAdd }: { direction: 'in' | 'out'; busy: boolean; onAdd: (p: IpPermission) => Promise<boolean> }) {
  const [f, setF] = useState<RuleForm>({ protocol: 'tcp', ports: '22', source: '0.0.0.0/0', description: '' });
  const [problem, setProblem] = useState<string | null>(null);
  const portsApply = f.protocol === 'tcp' || f.protocol === 'udp';
  return (
    <form
      className="inline-form"
      aria-label="Add rule"
      onSubmit={async (e) => {
        e.preventDefault();
        const { permission, error } = permissionFromForm(f);
        setProblem(error ?? null);
        if (permission && (await onAdd(permission))) setF({ ...f, description: '' });
      }}
    >
      <Field label="Protocol">
        {(id) => (
          <select id={id} value={f.protocol} onChange={(e) => setF({ ...f, protocol: e.target.value })} data-testid="rule-protocol">
            <option value="tcp">TCP</option>
            <option value="udp">UDP</option>
            <option value="icmp">ICMP</option>
            <option value="-1">All traffic</option>
          </select>
        )}
      </Field>
      <Field label="Ports">
        {(id) => <input id={id} className="narrow" value={portsApply ? f.ports : 'All'} disabled={!portsApply} onChange={(e) => setF({ ...f, ports: e.target.value })} data-testid="rule-ports" />}
      </Field>
      <Field label={direction === 'in' ? 'Source' : 'Destination'}>
        {(id) => <input id={id} value={f.source} onChange={(e) => setF({ ...f, source: e.target.value })} placeholder="0.0.0.0/0 or sg-…" data-testid="rule-source" />}
      </Field>
      <Field label="Description">{(id) => <input id={id} value={f.description} onChange={(e) => setF({ ...f, description: e.target.value })} />}</Field>
      <div className="field field-button">
        <button type="submit" disabled={busy} data-testid="rule-add">
          Add rule
        </button>
      </div>
      {problem && (
        <p className="warn-text" role="alert">
          {problem}
        </p>
      )}
    </form>
  );
}
