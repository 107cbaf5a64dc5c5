// Small shared pieces: dialogs, errors, tabs, badges, fields.
import { useEffect, useId, useRef, type ReactNode } from 'react';
import { useAction } from '../api';
import { errorInfo } from '../lib/errors';
import { stateClass } from '../lib/instances';

export function ErrorBox({ error, testid, title }: { error: unknown; testid?: string; title?: string }) {
  if (error === undefined || error === null) return null;
  const { code, message } = errorInfo(error);
  return (
    <div className="error" role="alert" data-testid={testid ?? 'error'} data-code={code}>
      {title && <strong>{title} </strong>}
      <code className="error-code">{code}</code> <span>{message}</span>
    </div>
  );
}

export function Notice({ children, kind = 'info', testid }: { children: ReactNode; kind?: 'info' | 'ok' | 'warn'; testid?: string }) {
  return (
    <div className={`notice notice-${kind}`} role="status" data-testid={testid}>
      {children}
    </div>
  );
}

export function Spinner({ label = 'Loading' }: { label?: string }) {
  return (
    <span className="spinner" role="status">
      <span className="spinner-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

export function StateBadge({ state, testid }: { state: string | undefined; testid?: string }) {
  const s = state ?? 'unknown';
  return (
    <span className={`badge badge-${stateClass(s === 'available' || s === 'in-use' || s === 'completed' ? 'running' : s === 'creating' ? 'pending' : s)}`} data-testid={testid} data-state={s}>
      {s}
    </span>
  );
}

/** A modal built on <dialog>: focus stays inside, Escape closes. */
export function Modal({
  title,
  onClose,
  children,
  footer,
  wide,
  testid,
}: {
  title: string;
  onClose: () => void;
  children: ReactNode;
  footer?: ReactNode;
  wide?: boolean;
  testid?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => {
      if (d?.open) d.close();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      className={`modal${wide ? ' modal-wide' : ''}`}
      aria-labelledby={titleId}
      data-testid={testid}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <div className="modal-head">
        <h2 id={titleId}>{title}</h2>
        <button type="button" className="btn-icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </div>
      <div className="modal-body">{children}</div>
      {footer && <div className="modal-foot">{footer}</div>}
    </dialog>
  );
}

export function ConfirmDialog({
  title,
  children,
  confirmLabel,
  danger,
  busy,
  error,
  onConfirm,
  onCancel,
}: {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  error?: unknown;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  return (
    <Modal
      title={title}
      onClose={onCancel}
      testid="confirm-dialog"
      footer={
        <>
          <button type="button" onClick={onCancel} data-testid="confirm-cancel">
            Cancel
          </button>
          <button type="button" className={danger ? 'btn-danger' : 'btn-primary'} onClick={onConfirm} disabled={busy} data-testid="confirm-ok">
            {busy ? 'Working…' : confirmLabel}
          </button>
        </>
      }
    >
      {children}
      <ErrorBox error={error} />
    </Modal>
  );
}

export function Tabs<T extends string>({
  tabs,
  value,
  onChange,
  label,
  testidPrefix,
}: {
  tabs: { id: T; label: string }[];
  value: T;
  onChange: (id: T) => void;
  label: string;
  testidPrefix?: string;
}) {
  return (
    <div className="tabs" role="tablist" aria-label={label}>
      {tabs.map((t) => (
        <button
          key={t.id}
          type="button"
          role="tab"
          aria-selected={t.id === value}
          className={t.id === value ? 'tab tab-active' : 'tab'}
          onClick={() => onChange(t.id)}
          data-testid={testidPrefix ? `${testidPrefix}-${t.id}` : undefined}
        >
          {t.label}
        </button>
      ))}
    </div>
  );
}

/** A labelled control: the label wraps nothing, it points at the control by id. */
export function Field({ label, hint, children, id }: { label: string; hint?: ReactNode; children: (id: string) => ReactNode; id?: string }) {
  const auto = useId();
  const fid = id ?? auto;
  return (
    <div className="field">
      <label htmlFor={fid}>{label}</label>
      {children(fid)}
      {hint && <div className="hint">{hint}</div>}
    </div>
  );
}

export function PageHeader({ title, children, status }: { title: string; children?: ReactNode; status?: ReactNode }) {
  return (
    <div className="page-head">
      <h1>{title}</h1>
      <div className="page-status" aria-live="polite">
        {status}
      </div>
      <div className="page-actions">{children}</div>
    </div>
  );
}

export function KeyValues({ items }: { items: [string, ReactNode][] }) {
  return (
    <dl className="kv">
      {items.map(([k, v]) => (
        <div key={k} className="kv-item">
          <dt>{k}</dt>
          <dd>{v === undefined || v === null || v === '' ? '—' : v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function Refreshing({ on }: { on: boolean }) {
  return (
    <span className={on ? 'refreshing' : 'refreshing refreshing-off'} aria-hidden={!on}>
      refreshing…
    </span>
  );
}

/** A confirmation that runs one API call, shows its error inline, and closes on success. */
export function SimpleConfirm({
  title, label, text, danger, action, onClose, onDone,
}: {
  title: string;
  label: string;
  text: string;
  danger?: boolean;
  action: Parameters<ReturnType<typeof useAction>['run']>[0];
  onClose: () => void;
  onDone: () => void;
}) {
  const { run, busy, error } = useAction();
  return (
    <ConfirmDialog
      title={title}
      confirmLabel={label}
      danger={danger}
      busy={busy}
      error={error}
      onCancel={onClose}
      onConfirm={async () => {
        if ((await run(action)) !== undefined) onDone();
      }}
    >
      <p>{text}</p>
    </ConfirmDialog>
  );
}
