// Creates a key pair and offers its private key for download exactly once.
import { CreateKeyPairCommand } from '@aws-sdk/client-ec2';
import { useEffect, useState } from 'react';
import { useAction } from '../api';
import { ErrorBox, Field, Notice } from './ui';

export interface CreatedKey {
  name: string;
  material: string;
}

/** The one-time download link of a created key's private key. */
export function PemDownload({ created, onDone }: { created: CreatedKey; onDone?: () => void }) {
  const [url, setUrl] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  useEffect(() => {
    const u = URL.createObjectURL(new Blob([created.material], { type: 'application/x-pem-file' }));
    setUrl(u);
    setDone(false);
    return () => URL.revokeObjectURL(u);
  }, [created]);
  if (done) {
    return (
      <Notice kind="ok" testid="pem-downloaded">
        {created.name}.pem was downloaded. Kiln keeps no copy of the private key; store it safely.
      </Notice>
    );
  }
  return (
    <Notice kind="warn" testid="pem-offer">
      Key pair <strong>{created.name}</strong> was created. Download its private key now: this is the only time it is offered.{' '}
      {url && (
        <a
          className="btn btn-primary"
          href={url}
          download={`${created.name}.pem`}
          data-testid="download-pem"
          onClick={() => {
            // Let the download start before the link (and its blob) go away.
            setTimeout(() => {
              setDone(true);
              onDone?.();
            }, 500);
          }}
        >
          Download {created.name}.pem
        </a>
      )}
    </Notice>
  );
}

export function KeyPairCreator({ onCreated, defaultName = '' }: { onCreated: (k: CreatedKey) => void; defaultName?: string }) {
  const [name, setName] = useState(defaultName);
  const [type, setType] = useState<'rsa' | 'ed25519'>('rsa');
  const { run, busy, error } = useAction();
  const create = async () => {
    const out = await run((c) => c.send(new CreateKeyPairCommand({ KeyName: name.trim(), KeyType: type, KeyFormat: 'pem' })));
    if (out?.KeyMaterial) onCreated({ name: out.KeyName ?? name.trim(), material: out.KeyMaterial });
  };
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        void create();
      }}
    >
      <Field label="Key pair name">
        {(id) => (
          <input id={id} value={name} onChange={(e) => setName(e.target.value)} required maxLength={255} data-testid="key-name" autoComplete="off" />
        )}
      </Field>
      <Field label="Key type">
        {(id) => (
          <select id={id} value={type} onChange={(e) => setType(e.target.value as 'rsa' | 'ed25519')} data-testid="key-type">
            <option value="rsa">RSA</option>
            <option value="ed25519">ED25519</option>
          </select>
        )}
      </Field>
      <div className="field field-button">
        <button type="submit" className="btn-primary" disabled={busy || !name.trim()} data-testid="key-create">
          {busy ? 'Creating…' : 'Create key pair'}
        </button>
      </div>
      <ErrorBox error={error} testid="key-error" />
    </form>
  );
}
