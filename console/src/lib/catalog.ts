// Loads the instance-type catalog once per region (it is large and never changes).
import { paginateDescribeInstanceTypes, type EC2Client } from '@aws-sdk/client-ec2';
import { toTypeRow, type TypeRow } from './instanceTypes';

const cache = new Map<string, Promise<TypeRow[]>>();

export function loadInstanceTypes(c: EC2Client, region: string): Promise<TypeRow[]> {
  let p = cache.get(region);
  if (!p) {
    p = (async () => {
      const rows: TypeRow[] = [];
      for await (const page of paginateDescribeInstanceTypes({ client: c, pageSize: 100 }, {})) {
        rows.push(...(page.InstanceTypes ?? []).map(toTypeRow));
      }
      return rows;
    })();
    cache.set(region, p);
    p.catch(() => cache.delete(region));
  }
  return p;
}
