// The AMI catalog with its four tabs and a search box; used by the wizard.
import { DescribeImagesCommand, type Image } from '@aws-sdk/client-ec2';
import { useMemo, useState } from 'react';
import { useQuery } from '../api';
import { CATALOG_TABS, catalogQuery, isLaunchable, searchImages, type CatalogTab } from '../lib/amis';
import { Field, ErrorBox, Spinner, Tabs } from './ui';

export function AmiPicker({ selected, onSelect }: { selected?: Image; onSelect: (im: Image) => void }) {
  const [tab, setTab] = useState<CatalogTab>('quickstart');
  const [text, setText] = useState('');
  const q = useQuery((c) => c.send(new DescribeImagesCommand(catalogQuery(tab))), [tab]);
  const images = useMemo(() => searchImages(q.data?.Images ?? [], text), [q.data, text]);
  const shown = images.slice(0, 50);
  return (
    <div className="ami-picker">
      <Tabs label="AMI catalog" tabs={CATALOG_TABS} value={tab} onChange={setTab} testidPrefix="ami-tab" />
      <Field label="Search AMIs">
        {(id) => <input id={id} type="search" value={text} onChange={(e) => setText(e.target.value)} placeholder="Name, ID, architecture…" data-testid="ami-search" />}
      </Field>
      <ErrorBox error={q.error} />
      <div className="ami-options" role="radiogroup" aria-label="AMIs">
        {q.loading && <Spinner label="Loading AMIs" />}
        {!q.loading && images.length === 0 && <p className="muted">No AMI here{text ? ' matches the search' : ''}.</p>}
        {shown.map((im) => {
          const id = `ami-${im.ImageId}`;
          const ok = isLaunchable(im);
          return (
            <div key={im.ImageId} className={selected?.ImageId === im.ImageId ? 'ami-option ami-option-selected' : 'ami-option'}>
              <input
                type="radio"
                id={id}
                name="ami"
                checked={selected?.ImageId === im.ImageId}
                disabled={!ok}
                onChange={() => onSelect(im)}
                data-testid="ami-option"
                data-ami-id={im.ImageId}
                data-ami-name={im.Name}
              />
              <label htmlFor={id}>
                <span className="ami-name">{im.Name ?? im.ImageId}</span>
                <span className="ami-meta">
                  <code>{im.ImageId}</code> · {im.Architecture} · {im.ImageOwnerAlias ?? im.OwnerId}
                  {!ok && ` · ${im.State}`}
                </span>
                {im.Description && <span className="ami-desc">{im.Description}</span>}
              </label>
            </div>
          );
        })}
        {images.length > shown.length && <p className="muted small">Showing 50 of {images.length}; search to narrow.</p>}
      </div>
    </div>
  );
}
