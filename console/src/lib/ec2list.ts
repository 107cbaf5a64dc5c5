// Reading whole lists through EC2's paging.
import { DescribeInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2';
import { flattenReservations } from './instances';

export async function describeAllInstances(c: EC2Client, filters?: { Name: string; Values: string[] }[]): Promise<Instance[]> {
  const reservations = [];
  let token: string | undefined;
  do {
    const out = await c.send(new DescribeInstancesCommand({ NextToken: token, Filters: filters }));
    reservations.push(...(out.Reservations ?? []));
    token = out.NextToken;
  } while (token);
  return flattenReservations(reservations);
}
