// Times are shown in the browser's time zone (tests pass one explicitly).

export interface TimeOptions {
  timeZone?: string;
  locale?: string;
}

function toDate(value: Date | string | number | undefined | null): Date | null {
  if (value === undefined || value === null || value === '') return null;
  const d = value instanceof Date ? value : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2026-11-30 23:16:09 UTC" style: ISO-like date and time plus the zone's short name. */
export function formatTime(value: Date | string | number | undefined | null, opts: TimeOptions = {}): string {
  const d = toDate(value);
  if (!d) return '—';
  const fmt = new Intl.DateTimeFormat('en-CA', {
    timeZone: opts.timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'short',
  });
  const parts: Record<string, string> = {};
  for (const p of fmt.formatToParts(d)) parts[p.type] = p.value;
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName ?? ''}`.trim();
}

/** "3 min ago" style, for "last refreshed" notes. */
export function formatAgo(value: Date | string | number | undefined | null, now: Date = new Date()): string {
  const d = toDate(value);
  if (!d) return '—';
  const s = Math.round((now.getTime() - d.getTime()) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

/** Whether an ISO 8601 expiration has passed (unparseable counts as not expired). */
export function isExpired(expiration: string | undefined, now: Date = new Date()): boolean {
  const d = toDate(expiration);
  return d !== null && d.getTime() <= now.getTime();
}
