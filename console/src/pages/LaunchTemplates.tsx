// Launch templates: the list, each template's versions and what they set, launching
// from a version, choosing the default, and deleting versions and templates.
import {
  DeleteLaunchTemplateCommand, DeleteLaunchTemplateVersionsCommand, DescribeLaunchTemplatesCommand,
  DescribeLaunchTemplateVersionsCommand, ModifyLaunchTemplateCommand, RunInstancesCommand, type LaunchTemplate,
} from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { ConfirmDialog, ErrorBox, Field, KeyValues, Notice, PageHeader, Refreshing, SimpleConfirm } from '../components/ui';
import { href } from '../lib/route';
import { describeTemplateData, sortVersions } from '../lib/templates';
import { formatTime } from '../lib/time';

export default function LaunchTemplates() {
  const q = useQuery((c) => c.send(new DescribeLaunchTemplatesCommand({})), [], 5000);
  const [selected, setSelected] = useState<string[]>([]);
  const [dialog, setDialog] = useState<'delete' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const t = q.data?.LaunchTemplates?.find((x) => x.LaunchTemplateId === selected[0]);
  const columns: Column<LaunchTemplate>[] = [
    { key: 'name', header: 'Name', render: (x) => x.LaunchTemplateName },
    { key: 'id', header: 'Template ID', render: (x) => <code>{x.LaunchTemplateId}</code> },
    { key: 'default', header: 'Default version', render: (x) => x.DefaultVersionNumber },
    { key: 'latest', header: 'Latest version', render: (x) => x.LatestVersionNumber },
    { key: 'created', header: 'Created', render: (x) => formatTime(x.CreateTime), className: 'hide-narrow nowrap' },
  ];
  return (
    <section>
      <PageHeader title="Launch templates" status={<Refreshing on={q.refreshing && !q.loading} />}>
        <a className="btn btn-primary" href={href('launch')} title="Fill in the wizard, then Save as launch template">
          Create from the launch wizard
        </a>
        <button type="button" className="btn-danger-outline" disabled={!t} onClick={() => setDialog('delete')} data-testid="template-delete">
          Delete
        </button>
      </PageHeader>
      <div className="flash-slot">{flash && <Notice kind="ok" testid="flash">{flash}</Notice>}</div>
      <DataTable
        caption="Launch templates"
        testid="templates-table"
        rows={q.data?.LaunchTemplates}
        columns={columns}
        rowKey={(x) => x.LaunchTemplateId ?? ''}
        loading={q.loading}
        error={q.error}
        empty={
          <>
            No launch templates. Fill in the <a href={href('launch')}>launch wizard</a> and choose Save as launch template.
          </>
        }
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(x) => ({ 'data-testid': 'template-row', 'data-template-name': x.LaunchTemplateName })}
      />
      {t ? (
        <TemplateVersions template={t} onChanged={(m) => { setFlash(m); q.refresh(); }} />
      ) : (
        <p className="muted details-placeholder">Select a template to see its versions.</p>
      )}
      {dialog === 'delete' && t && (
        <SimpleConfirm
          danger
          title="Delete launch template?"
          label="Delete"
          text={`Delete ${t.LaunchTemplateName} (${t.LaunchTemplateId}) and all ${t.LatestVersionNumber} of its versions? Instances launched from it keep running.`}
          action={(c) => c.send(new DeleteLaunchTemplateCommand({ LaunchTemplateId: t.LaunchTemplateId }))}
          onClose={() => setDialog(null)}
          onDone={() => {
            setDialog(null);
            setSelected([]);
            setFlash(`Deleted ${t.LaunchTemplateName}.`);
            q.refresh();
          }}
        />
      )}
    </section>
  );
}

function TemplateVersions({ template, onChanged }: { template: LaunchTemplate; onChanged: (message: string) => void }) {
  const id = template.LaunchTemplateId!;
  const q = useQuery(
    (c) => c.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: id })),
    [id, template.LatestVersionNumber, template.DefaultVersionNumber],
  );
  const versions = sortVersions(q.data?.LaunchTemplateVersions ?? []);
  const [chosen, setChosen] = useState<number | null>(null);
  const v = versions.find((x) => x.VersionNumber === chosen) ?? versions.find((x) => x.DefaultVersion) ?? versions[0];
  const [dialog, setDialog] = useState<'launch' | 'default' | 'delete-version' | null>(null);
  return (
    <div className="details" data-testid="template-details">
      <h2>
        {template.LaunchTemplateName} <span className="muted">{id}</span>
      </h2>
      <ErrorBox error={q.error} />
      <div className="toolbar">
        <Field label="Version">
          {(fid) => (
            <select id={fid} value={v?.VersionNumber ?? ''} onChange={(e) => setChosen(Number(e.target.value))} data-testid="template-version">
              {versions.map((x) => (
                <option key={x.VersionNumber} value={x.VersionNumber}>
                  {x.VersionNumber}
                  {x.DefaultVersion ? ' (default)' : ''}
                  {x.VersionDescription ? ` – ${x.VersionDescription}` : ''}
                </option>
              ))}
            </select>
          )}
        </Field>
        <div className="actionbar">
          <button type="button" className="btn-primary" disabled={!v} onClick={() => setDialog('launch')} data-testid="template-launch">
            Launch instances
          </button>
          <button type="button" disabled={!v || v.DefaultVersion} onClick={() => setDialog('default')} data-testid="template-set-default">
            Set as default
          </button>
          <button type="button" className="btn-danger-outline" disabled={!v || v.DefaultVersion} onClick={() => setDialog('delete-version')} data-testid="template-delete-version">
            Delete version
          </button>
        </div>
      </div>
      {q.loading ? (
        <p className="muted">Loading versions…</p>
      ) : v ? (
        <KeyValues
          items={[
            ['Version', `${v.VersionNumber}${v.DefaultVersion ? ' (default)' : ''}`],
            ['Created', formatTime(v.CreateTime)],
            ...(v.VersionDescription ? ([['Description', v.VersionDescription]] as [string, string][]) : []),
            ...describeTemplateData(v.LaunchTemplateData),
          ]}
        />
      ) : (
        <p className="muted">No versions.</p>
      )}
      {dialog === 'launch' && v && (
        <LaunchFromTemplate
          templateId={id}
          version={v.VersionNumber!}
          onClose={() => setDialog(null)}
          onDone={(ids) => {
            setDialog(null);
            window.location.hash = href('instances', { launched: ids.join(',') });
          }}
        />
      )}
      {dialog === 'default' && v && (
        <SimpleConfirm
          title="Set the default version?"
          label="Set as default"
          text={`Launches that name ${template.LaunchTemplateName} without a version, or with $Default, will use version ${v.VersionNumber}.`}
          action={(c) => c.send(new ModifyLaunchTemplateCommand({ LaunchTemplateId: id, DefaultVersion: String(v.VersionNumber) }))}
          onClose={() => setDialog(null)}
          onDone={() => {
            setDialog(null);
            onChanged(`Version ${v.VersionNumber} of ${template.LaunchTemplateName} is now the default.`);
          }}
        />
      )}
      {dialog === 'delete-version' && v && (
        <SimpleConfirm
          danger
          title="Delete this version?"
          label="Delete version"
          text={`Delete version ${v.VersionNumber} of ${template.LaunchTemplateName}? The default version cannot be deleted.`}
          action={async (c) => {
            const out = await c.send(new DeleteLaunchTemplateVersionsCommand({ LaunchTemplateId: id, Versions: [String(v.VersionNumber)] }));
            const failed = out.UnsuccessfullyDeletedLaunchTemplateVersions?.[0];
            if (failed) throw Object.assign(new Error(failed.ResponseError?.Message ?? 'not deleted'), { name: failed.ResponseError?.Code ?? 'Error' });
            return out;
          }}
          onClose={() => setDialog(null)}
          onDone={() => {
            setDialog(null);
            setChosen(null);
            onChanged(`Deleted version ${v.VersionNumber} of ${template.LaunchTemplateName}.`);
          }}
        />
      )}
    </div>
  );
}

function LaunchFromTemplate({ templateId, version, onClose, onDone }: { templateId: string; version: number; onClose: () => void; onDone: (ids: string[]) => void }) {
  const [count, setCount] = useState(1);
  const { run, busy, error } = useAction();
  const bad = !Number.isInteger(count) || count < 1 || count > 20;
  return (
    <ConfirmDialog
      title="Launch from template"
      confirmLabel="Launch"
      busy={busy || bad}
      error={error}
      onCancel={onClose}
      onConfirm={async () => {
        const out = await run((c) =>
          c.send(new RunInstancesCommand({ LaunchTemplate: { LaunchTemplateId: templateId, Version: String(version) }, MinCount: count, MaxCount: count })),
        );
        if (out) onDone((out.Instances ?? []).map((i) => i.InstanceId!));
      }}
    >
      <p>
        Launch from version {version} of {templateId}. Everything else comes from the template.
      </p>
      <Field label="Number of instances" hint="1 to 20.">
        {(fid) => <input id={fid} type="number" min={1} max={20} className="narrow" value={count} onChange={(e) => setCount(Math.floor(Number(e.target.value) || 0))} data-testid="template-count" />}
      </Field>
    </ConfirmDialog>
  );
}
