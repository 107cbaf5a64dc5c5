// Tags: EC2's list form, reading them, and parsing what the user types.

export interface Tag {
  Key?: string;
  Value?: string;
}

/** The value of one tag, or undefined. */
export function tagValue(tags: Tag[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

/** The Name tag, or ''. */
export function nameOf(tags: Tag[] | undefined): string {
  return tagValue(tags, 'Name') ?? '';
}

export interface ParsedTags {
  tags: { Key: string; Value: string }[];
  errors: string[];
}

/**
 * Parses tags typed one per line (or separated by commas) as `key=value`. A key without
 * `=` gets an empty value. EC2's limits are checked: keys 1–128 characters, values up to
 * 256, no `aws:` prefix, no duplicate keys, at most 50 tags.
 */
export function parseTags(text: string): ParsedTags {
  const tags: { Key: string; Value: string }[] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  const items = text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const item of items) {
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim();
    const value = eq < 0 ? '' : item.slice(eq + 1).trim();
    if (!key) {
      errors.push(`"${item}": a tag needs a key`);
      continue;
    }
    if (key.length > 128) errors.push(`"${key.slice(0, 20)}…": keys are at most 128 characters`);
    else if (value.length > 256) errors.push(`"${key}": values are at most 256 characters`);
    else if (key.toLowerCase().startsWith('aws:')) errors.push(`"${key}": the aws: prefix is reserved`);
    else if (seen.has(key)) errors.push(`"${key}": duplicate key`);
    else {
      seen.add(key);
      tags.push({ Key: key, Value: value });
    }
  }
  if (tags.length > 50) errors.push('at most 50 tags');
  return { tags, errors };
}

/** Tags back to the typed form, sorted by key. */
export function formatTags(tags: Tag[] | undefined): string {
  return [...(tags ?? [])]
    .filter((t) => t.Key)
    .sort((a, b) => (a.Key ?? '').localeCompare(b.Key ?? ''))
    .map((t) => `${t.Key}=${t.Value ?? ''}`)
    .join('\n');
}
