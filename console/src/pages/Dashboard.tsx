import {
  DescribeAddressesCommand, DescribeImagesCommand, DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand, DescribeVolumesCommand, type EC2Client,
} from '@aws-sdk/client-ec2';
import { useQuery } from '../api';
import { ErrorBox, PageHeader, Refreshing } from '../components/ui';
import { describeAllInstances } from '../lib/ec2list';
import { countByState, INSTANCE_STATES, stateClass } from '../lib/instances';
import { href } from '../lib/route';
import { formatTime } from '../lib/time';

async function counts(c: EC2Client) {
  const [instances, images, volumes, keys, groups, addresses] = await Promise.all([
    describeAllInstances(c),
    c.send(new DescribeImagesCommand({ Owners: ['self'] })),
    c.send(new DescribeVolumesCommand({})),
    c.send(new DescribeKeyPairsCommand({})),
    c.send(new DescribeSecurityGroupsCommand({})),
    c.send(new DescribeAddressesCommand({})),
  ]);
  return {
    byState: countByState(instances),
    total: instances.length,
    images: images.Images?.length ?? 0,
    volumes: volumes.Volumes?.length ?? 0,
    keys: keys.KeyPairs?.length ?? 0,
    groups: groups.SecurityGroups?.length ?? 0,
    addresses: addresses.Addresses?.length ?? 0,
  };
}

export default function Dashboard() {
  const q = useQuery(counts, [], 5000);
  const d = q.data;
  const n = (v: number | undefined) => (v === undefined ? '…' : String(v));
  const cards: { label: string; value: number | undefined; page: Parameters<typeof href>[0]; testid: string }[] = [
    { label: 'AMIs (owned)', value: d?.images, page: 'amis', testid: 'count-amis' },
    { label: 'Volumes', value: d?.volumes, page: 'volumes', testid: 'count-volumes' },
    { label: 'Key pairs', value: d?.keys, page: 'keypairs', testid: 'count-keypairs' },
    { label: 'Security groups', value: d?.groups, page: 'security-groups', testid: 'count-security-groups' },
    { label: 'Elastic IPs', value: d?.addresses, page: 'addresses', testid: 'count-addresses' },
  ];
  return (
    <section>
      <PageHeader
        title="Dashboard"
        status={
          <>
            {q.updatedAt && <span className="muted">Updated {formatTime(q.updatedAt)}</span>} <Refreshing on={q.refreshing && !q.loading} />
          </>
        }
      >
        <a className="btn btn-primary" href={href('launch')}>
          Launch instances
        </a>
      </PageHeader>
      <ErrorBox error={q.error} />
      <h2 className="section-title">Instances {d && <span className="muted">({d.total})</span>}</h2>
      <div className="cards" data-testid="instance-counts">
        {INSTANCE_STATES.map((s) => (
          <a key={s} className={`card card-state-${stateClass(s)}`} href={href('instances', { state: s })} data-testid={`count-${s}`}>
            <span className={d?.byState[s] === 0 ? 'card-value card-zero' : 'card-value'}>{n(d?.byState[s])}</span>
            <span className="card-label">{s}</span>
          </a>
        ))}
      </div>
      <h2 className="section-title">Resources</h2>
      <div className="cards">
        {cards.map((c) => (
          <a key={c.label} className="card" href={href(c.page, c.page === 'amis' ? { tab: 'mine' } : {})} data-testid={c.testid}>
            <span className="card-value">{n(c.value)}</span>
            <span className="card-label">{c.label}</span>
          </a>
        ))}
      </div>
    </section>
  );
}
