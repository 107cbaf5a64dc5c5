// One table for every list: loading, empty and error states, and row selection.
import type { ReactNode } from 'react';
import { ErrorBox, Spinner } from './ui';

export interface Column<T> {
  key: string;
  header: string;
  render: (row: T) => ReactNode;
  className?: string;
}

export function DataTable<T>({
  rows,
  columns,
  rowKey,
  loading,
  error,
  empty,
  selection = 'none',
  selected,
  onSelect,
  caption,
  testid,
  rowProps,
}: {
  rows: T[] | undefined;
  columns: Column<T>[];
  rowKey: (row: T) => string;
  loading?: boolean;
  error?: unknown;
  empty: ReactNode;
  selection?: 'none' | 'single' | 'multi';
  selected?: string[];
  onSelect?: (keys: string[]) => void;
  caption: string;
  testid?: string;
  rowProps?: (row: T) => Record<string, string | undefined>;
}) {
  const sel = new Set(selected ?? []);
  const toggle = (key: string, only: boolean) => {
    if (!onSelect) return;
    if (selection === 'single' || only) onSelect(sel.has(key) && sel.size === 1 && selection === 'single' ? [] : [key]);
    else onSelect(sel.has(key) ? [...sel].filter((k) => k !== key) : [...sel, key]);
  };
  const colCount = columns.length + (selection === 'none' ? 0 : 1);
  const allKeys = (rows ?? []).map(rowKey);
  return (
    <div className="table-wrap">
      <ErrorBox error={error} />
      <table className="table" data-testid={testid}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            {selection === 'multi' && (
              <th className="col-select">
                <input
                  type="checkbox"
                  aria-label="Select all rows"
                  checked={allKeys.length > 0 && allKeys.every((k) => sel.has(k))}
                  onChange={(e) => onSelect?.(e.target.checked ? allKeys : [])}
                />
              </th>
            )}
            {selection === 'single' && (
              <th className="col-select">
                <span className="sr-only">Select</span>
              </th>
            )}
            {columns.map((c) => (
              <th key={c.key} className={c.className} scope="col">
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {loading && !rows && (
            <tr>
              <td colSpan={colCount} className="table-note">
                <Spinner />
              </td>
            </tr>
          )}
          {rows && rows.length === 0 && (
            <tr>
              <td colSpan={colCount} className="table-note" data-testid="table-empty">
                {empty}
              </td>
            </tr>
          )}
          {rows?.map((row) => {
            const key = rowKey(row);
            const isSel = sel.has(key);
            return (
              <tr
                key={key}
                className={isSel ? 'row-selected' : undefined}
                data-selected={selection === 'none' ? undefined : String(isSel)}
                onClick={(e) => {
                  if (selection === 'none') return;
                  const t = e.target as HTMLElement;
                  if (t.closest('input,button,a,select,textarea,label')) return;
                  toggle(key, true);
                }}
                {...(rowProps ? rowProps(row) : {})}
              >
                {selection !== 'none' && (
                  <td className="col-select">
                    <input
                      type={selection === 'multi' ? 'checkbox' : 'radio'}
                      name={selection === 'single' ? `${caption}-select` : undefined}
                      aria-label={`Select ${key}`}
                      checked={isSel}
                      onChange={() => toggle(key, false)}
                      data-testid="row-select"
                    />
                  </td>
                )}
                {columns.map((c) => (
                  <td key={c.key} className={c.className} data-col={c.key}>
                    {c.render(row)}
                  </td>
                ))}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
