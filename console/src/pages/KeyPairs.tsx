import { DeleteKeyPairCommand, DescribeKeyPairsCommand, ImportKeyPairCommand, type KeyPairInfo } from '@aws-sdk/client-ec2';
import { useState } from 'react';
import { useAction, useQuery } from '../api';
import { DataTable, type Column } from '../components/DataTable';
import { KeyPairCreator, PemDownload, type CreatedKey } from '../components/KeyPairCreator';
import { ConfirmDialog, ErrorBox, Field, Notice, PageHeader } from '../components/ui';
import { formatTime } from '../lib/time';

export default function KeyPairs() {
  const q = useQuery((c) => c.send(new DescribeKeyPairsCommand({})), []);
  const [selected, setSelected] = useState<string[]>([]);
  const [mode, setMode] = useState<'create' | 'import' | null>(null);
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [confirm, setConfirm] = useState(false);
  const [flash, setFlash] = useState<string | null>(null);
  const del = useAction();
  const key = q.data?.KeyPairs?.find((k) => k.KeyName === selected[0]);

  const columns: Column<KeyPairInfo>[] = [
    { key: 'name', header: 'Name', render: (k) => k.KeyName },
    { key: 'type', header: 'Type', render: (k) => k.KeyType },
    { key: 'id', header: 'ID', render: (k) => <code>{k.KeyPairId}</code>, className: 'hide-narrow' },
    { key: 'fp', header: 'Fingerprint', render: (k) => <code className="wrap">{k.KeyFingerprint}</code>, className: 'hide-narrow' },
    { key: 'created', header: 'Created', render: (k) => formatTime(k.CreateTime), className: 'nowrap' },
  ];

  return (
    <section>
      <PageHeader title="Key pairs">
        <button type="button" className="btn-primary" onClick={() => setMode(mode === 'create' ? null : 'create')} aria-expanded={mode === 'create'} data-testid="keypair-create-open">
          Create key pair
        </button>
        <button type="button" onClick={() => setMode(mode === 'import' ? null : 'import')} aria-expanded={mode === 'import'} data-testid="keypair-import-open">
          Import public key
        </button>
        <button type="button" className="btn-danger-outline" disabled={!key} onClick={() => setConfirm(true)} data-testid="keypair-delete">
          Delete
        </button>
      </PageHeader>
      {mode === 'create' && (
        <div className="panel">
          <KeyPairCreator
            onCreated={(k) => {
              setCreated(k);
              setMode(null);
              q.refresh();
            }}
          />
        </div>
      )}
      {mode === 'import' && (
        <ImportKey
          onDone={(name) => {
            setMode(null);
            setFlash(`Imported ${name}.`);
            q.refresh();
          }}
        />
      )}
      {created && <PemDownload created={created} />}
      <div className="flash-slot">{flash && <Notice kind="ok">{flash}</Notice>}</div>
      <DataTable
        caption="Key pairs"
        testid="keypairs-table"
        rows={q.data?.KeyPairs}
        columns={columns}
        rowKey={(k) => k.KeyName ?? ''}
        loading={q.loading}
        error={q.error}
        empty="No key pairs."
        selection="single"
        selected={selected}
        onSelect={setSelected}
        rowProps={(k) => ({ 'data-testid': 'keypair-row', 'data-key-name': k.KeyName })}
      />
      {confirm && key && (
        <ConfirmDialog
          title="Delete key pair?"
          confirmLabel="Delete"
          danger
          busy={del.busy}
          error={del.error}
          onCancel={() => setConfirm(false)}
          onConfirm={async () => {
            if (await del.run((c) => c.send(new DeleteKeyPairCommand({ KeyName: key.KeyName })))) {
              setConfirm(false);
              setSelected([]);
              setFlash(`Deleted ${key.KeyName}.`);
              q.refresh();
            }
          }}
        >
          <p>Delete {key.KeyName}? Running instances keep the public key they were launched with.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}

function ImportKey({ onDone }: { onDone: (name: string) => void }) {
  const [name, setName] = useState('');
  const [material, setMaterial] = useState('');
  const { run, busy, error } = useAction();
  return (
    <form
      className="panel"
      onSubmit={async (e) => {
        e.preventDefault();
        const out = await run((c) =>
          c.send(new ImportKeyPairCommand({ KeyName: name.trim(), PublicKeyMaterial: new TextEncoder().encode(material.trim()) })),
        );
        if (out) onDone(name.trim());
      }}
    >
      <Field label="Key pair name">{(id) => <input id={id} value={name} onChange={(e) => setName(e.target.value)} required data-testid="import-name" />}</Field>
      <Field label="Public key" hint="OpenSSH format: ssh-ed25519 AAAA… or ssh-rsa AAAA…">
        {(id) => <textarea id={id} rows={3} className="mono" value={material} onChange={(e) => setMaterial(e.target.value)} required data-testid="import-material" />}
      </Field>
      <button type="submit" className="btn-primary" disabled={busy || !name.trim() || !material.trim()} data-testid="import-submit">
        {busy ? 'Importing…' : 'Import key pair'}
      </button>
      <ErrorBox error={error} />
    </form>
  );
}
