import {
  DescribeAccountAttributesCommand, DescribeAddressesCommand, DescribeImagesCommand, DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand, DescribeVolumesCommand, type EC2Client,
} from '@aws-sdk/client-ec2';
import { useQuery } from '../api';
import { ErrorBox, PageHeader, Refreshing } from '../components/ui';
import { describeAllInstances } from '../lib/ec2list';
import { ACCOUNT_ATTRIBUTES, formatMib, HOST_ATTRIBUTES, parseCapacity, percentUsed, type Capacity } from '../lib/capacity';
import { errorInfo } from '../lib/errors';
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

/** The account's quota use, and the host's for the operator (others are refused it). */
async function capacity(c: EC2Client): Promise<Capacity> {
  const [account, host] = await Promise.all([
    c.send(new DescribeAccountAttributesCommand({ AttributeNames: ACCOUNT_ATTRIBUTES as never })),
    c.send(new DescribeAccountAttributesCommand({ AttributeNames: HOST_ATTRIBUTES as never })).catch((e: unknown) => {
      if (errorInfo(e).code === 'UnauthorizedOperation') return undefined;
      throw e;
    }),
  ]);
  return parseCapacity(account.AccountAttributes, host?.AccountAttributes);
}

function Meter({ label, used, total, unit, testid }: { label: string; used: number; total: number; unit: (n: number) => string; testid: string }) {
  const pct = percentUsed(used, total);
  return (
    <div className="card capacity" data-testid={testid}>
      <span className="card-label">{label}</span>
      <div className={pct >= 90 ? 'meter meter-high' : 'meter'} role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct}>
        <span style={{ width: `${pct}%` }} />
      </div>
      <span>
        <strong>{unit(used)}</strong> of {unit(total)} <span className="muted">({pct}%)</span>
      </span>
    </div>
  );
}

export default function Dashboard() {
  const q = useQuery(counts, [], 5000);
  const cap = useQuery(capacity, [], 5000);
  const vcpus = (n: number) => (Number.isFinite(n) ? `${n} vCPUs` : '—');
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
      <h2 className="section-title">Capacity</h2>
      <ErrorBox error={cap.error} />
      {cap.loading ? (
        <p className="muted">Loading capacity…</p>
      ) : cap.data ? (
        <div className="cards cards-wide">
          <Meter label="Your vCPU quota in this region" used={cap.data.vcpusInUse} total={cap.data.vcpuLimit} unit={vcpus} testid="capacity-quota" />
          {cap.data.host ? (
            <>
              <Meter label="Host vCPUs in use" used={cap.data.host.vcpusInUse} total={cap.data.host.vcpus} unit={vcpus} testid="capacity-host-vcpus" />
              <Meter label="Host memory in use" used={cap.data.host.memoryMibInUse} total={cap.data.host.memoryMib} unit={formatMib} testid="capacity-host-memory" />
              <div className="card" data-testid="capacity-host-instances">
                <span className="card-value">{cap.data.host.instances}</span>
                <span className="card-label">instances on the host, all accounts</span>
              </div>
            </>
          ) : (
            <p className="muted">The host's capacity is shown to the operator account.</p>
          )}
        </div>
      ) : null}
    </section>
  );
}
