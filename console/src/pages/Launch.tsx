import {
  AuthorizeSecurityGroupIngressCommand, CreateLaunchTemplateCommand, CreateSecurityGroupCommand, DescribeImagesCommand, DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand, DescribeSubnetsCommand, DescribeVpcsCommand, RunInstancesCommand, type Image,
} from '@aws-sdk/client-ec2';
import { useEffect, useMemo, useState } from 'react';
import { useApi, useQuery } from '../api';
import { AmiPicker } from '../components/AmiList';
import { KeyPairCreator, PemDownload, type CreatedKey } from '../components/KeyPairCreator';
import { ErrorBox, Field, Notice, PageHeader, Spinner } from '../components/ui';
import { loadInstanceTypes } from '../lib/catalog';
import { chooseCompatible, filterTypes, formatMemory, sortTypes } from '../lib/instanceTypes';
import {
  buildRunInstancesInput, defaultGroupName, EXTRA_VOLUME_TYPES, type ExtraVolume, ingressPermissions, initialWizardState, newExtraVolume,
  rootDevice, ROOT_VOLUME_TYPES, VOLUME_SIZE_LIMITS,
  subnetPublicIpDefault, validateWizard, type WizardState,
} from '../lib/launch';
import { href } from '../lib/route';
import { parseTags } from '../lib/tags';
import { templateDataOf, templateNameProblem } from '../lib/templates';

const MAX_TYPES_SHOWN = 60;

const DEVICE_LETTERS = 'fghijklmnop'.split('');

export default function Launch({ params }: { params: Record<string, string> }) {
  const api = useApi();
  const [s, setS] = useState<WizardState>(() => initialWizardState({ imageId: params.ami ?? '' }));
  const set = <K extends keyof WizardState>(k: K, v: WizardState[K]) => setS((old) => ({ ...old, [k]: v }));
  const [image, setImage] = useState<Image | undefined>();
  const [createdKey, setCreatedKey] = useState<CreatedKey | null>(null);
  const [showKeyCreator, setShowKeyCreator] = useState(false);
  const [launching, setLaunching] = useState<string | null>(null);
  const [launchError, setLaunchError] = useState<unknown>(undefined);
  const [createdGroup, setCreatedGroup] = useState<{ name: string; vpcId: string; id: string } | null>(null);
  /** The name being typed for Save as launch template; null while that form is closed. */
  const [templateName, setTemplateName] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  // The preselected AMI (from the AMIs page).
  const pre = useQuery(
    async (c) => (params.ami ? ((await c.send(new DescribeImagesCommand({ ImageIds: [params.ami] }))).Images ?? []) : []),
    [params.ami],
  );
  useEffect(() => {
    const im = pre.data?.[0];
    if (im && !image) chooseImage(im);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pre.data]);

  const chooseImage = (im: Image) => {
    setImage(im);
    setS((old) => ({ ...old, imageId: im.ImageId ?? '', rootSize: '', rootType: rootDevice(im).volumeType ?? old.rootType }));
  };

  const types = useQuery((c) => loadInstanceTypes(c, api.session.region), []);
  const keys = useQuery((c) => c.send(new DescribeKeyPairsCommand({})), [createdKey?.name]);
  const vpcs = useQuery((c) => c.send(new DescribeVpcsCommand({})), []);
  useEffect(() => {
    if (!s.vpcId && vpcs.data?.Vpcs?.length) {
      const def = vpcs.data.Vpcs.find((v) => v.IsDefault) ?? vpcs.data.Vpcs[0];
      set('vpcId', def.VpcId ?? '');
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [vpcs.data]);
  const subnets = useQuery(
    async (c) => (s.vpcId ? ((await c.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [s.vpcId] }] }))).Subnets ?? []) : []),
    [s.vpcId],
  );
  const groups = useQuery(
    async (c) =>
      s.vpcId ? ((await c.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [s.vpcId] }] }))).SecurityGroups ?? []) : [],
    [s.vpcId],
  );
  useEffect(() => {
    if (!s.newGroupName && groups.data) {
      set('newGroupName', defaultGroupName(groups.data.map((g) => g.GroupName ?? '')));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [groups.data]);

  const subnet = subnets.data?.find((x) => x.SubnetId === s.subnetId);
  const subnetMapsPublicIp = subnetPublicIpDefault(subnet);
  const publicIp = s.autoPublicIp ?? subnetMapsPublicIp;

  // Instance types.
  const [typeText, setTypeText] = useState('');
  const [minVcpus, setMinVcpus] = useState<number | ''>('');
  const [minMem, setMinMem] = useState<number | ''>('');
  const [compatibleOnly, setCompatibleOnly] = useState(false);
  const typeChoices = useMemo(() => chooseCompatible(types.data ?? [], image?.Architecture), [types.data, image?.Architecture]);
  const filteredTypes = useMemo(
    () =>
      sortTypes(
        filterTypes(typeChoices, { text: typeText, minVcpus: minVcpus || undefined, minMemoryGiB: minMem || undefined, compatibleOnly }),
        typeText,
      ),
    [typeChoices, typeText, minVcpus, minMem, compatibleOnly],
  );
  const chosenType = typeChoices.find((t) => t.name === s.instanceType);

  const ctx = { image, typeArchitectures: chosenType?.architectures, subnetMapsPublicIp };
  const problems = validateWizard(s, ctx);
  const root = rootDevice(image);

  /** The groups to use: the selected ones, or the new group, made once. */
  const ensureGroups = async (): Promise<string[]> => {
    if (s.sgMode !== 'new') return s.existingGroupIds;
    const name = s.newGroupName.trim();
    if (createdGroup && createdGroup.name === name && createdGroup.vpcId === s.vpcId) return [createdGroup.id];
    setLaunching(`Creating security group ${name}…`);
    const g = await api.call((c) =>
      c.send(
        new CreateSecurityGroupCommand({
          GroupName: name,
          Description: s.newGroupDescription.trim() || `Created by the Kiln console launch wizard`,
          VpcId: s.vpcId || undefined,
        }),
      ),
    );
    const perms = ingressPermissions(s.newGroupRules);
    if (perms.length) {
      setLaunching(`Opening ports on ${g.GroupId}…`);
      await api.call((c) => c.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: g.GroupId, IpPermissions: perms })));
    }
    setCreatedGroup({ name, vpcId: s.vpcId, id: g.GroupId! });
    return [g.GroupId!];
  };

  const launch = async () => {
    setLaunchError(undefined);
    try {
      const groupIds = await ensureGroups();
      setLaunching('Launching…');
      const out = await api.call((c) => c.send(new RunInstancesCommand(buildRunInstancesInput(s, groupIds, ctx))));
      const ids = (out.Instances ?? []).map((i) => i.InstanceId).filter(Boolean);
      window.location.hash = href('instances', { launched: ids.join(',') });
    } catch (e) {
      setLaunchError(e);
      setLaunching(null);
    }
  };

  /** Saves the wizard's choices as a new launch template (the count stays a launch's). */
  const saveTemplate = async (name: string) => {
    setLaunchError(undefined);
    try {
      const groupIds = await ensureGroups();
      setLaunching(`Saving launch template ${name}…`);
      const out = await api.call((c) =>
        c.send(
          new CreateLaunchTemplateCommand({
            LaunchTemplateName: name,
            VersionDescription: 'Saved from the launch wizard',
            LaunchTemplateData: templateDataOf(buildRunInstancesInput(s, groupIds, ctx)),
          }),
        ),
      );
      setLaunching(null);
      setTemplateName(null);
      setSaved(`Saved launch template ${out.LaunchTemplate?.LaunchTemplateName} (${out.LaunchTemplate?.LaunchTemplateId}).`);
    } catch (e) {
      setLaunchError(e);
      setLaunching(null);
    }
  };

  const existingGroups = groups.data ?? [];
  const tagErrors = parseTags(s.tagsText).errors;

  return (
    <section>
      <PageHeader title="Launch instances" />
      <div className="wizard">
        <div className="wizard-main">
          <fieldset className="panel">
            <legend>Name and tags</legend>
            <Field label="Name">
              {(id) => <input id={id} value={s.name} onChange={(e) => set('name', e.target.value)} placeholder="e.g. web-1" data-testid="launch-name" />}
            </Field>
            <Field label="Other tags" hint={tagErrors.length ? <span className="warn-text">{tagErrors.join('; ')}</span> : 'One key=value per line.'}>
              {(id) => <textarea id={id} rows={2} value={s.tagsText} onChange={(e) => set('tagsText', e.target.value)} data-testid="launch-tags" />}
            </Field>
          </fieldset>

          <fieldset className="panel">
            <legend>Application and OS image (AMI)</legend>
            {image ? (
              <p data-testid="selected-ami">
                Selected: <strong>{image.Name}</strong> <code>{image.ImageId}</code> · {image.Architecture}
              </p>
            ) : params.ami && pre.loading ? (
              <Spinner label="Loading the AMI" />
            ) : (
              <p className="muted">Choose an AMI.</p>
            )}
            <ErrorBox error={pre.error} />
            <AmiPicker selected={image} onSelect={chooseImage} />
          </fieldset>

          <fieldset className="panel">
            <legend>Instance type</legend>
            <p data-testid="selected-type">
              Selected: <strong>{s.instanceType || 'none'}</strong>
              {chosenType && ` · ${chosenType.vcpus} vCPU · ${formatMemory(chosenType.memoryMiB)} · ${chosenType.architectures.join(', ')}`}
              {chosenType && !chosenType.compatible && <span className="warn-text"> · {chosenType.reason}</span>}
            </p>
            <div className="toolbar">
              <Field label="Filter types">
                {(id) => <input id={id} type="search" value={typeText} onChange={(e) => setTypeText(e.target.value)} placeholder="t3, m5.large…" data-testid="type-search" />}
              </Field>
              <Field label="Min vCPUs">
                {(id) => (
                  <input id={id} type="number" min={0} className="narrow" value={minVcpus} onChange={(e) => setMinVcpus(e.target.value === '' ? '' : Number(e.target.value))} />
                )}
              </Field>
              <Field label="Min memory (GiB)">
                {(id) => (
                  <input id={id} type="number" min={0} step="0.5" className="narrow" value={minMem} onChange={(e) => setMinMem(e.target.value === '' ? '' : Number(e.target.value))} />
                )}
              </Field>
              <div className="check check-inline">
                <input id="compatible-only" type="checkbox" checked={compatibleOnly} onChange={(e) => setCompatibleOnly(e.target.checked)} />
                <label htmlFor="compatible-only">Only types that can run the AMI</label>
              </div>
            </div>
            <ErrorBox error={types.error} />
            <div className="type-list" role="radiogroup" aria-label="Instance types">
              {types.loading && <Spinner label="Loading instance types" />}
              {!types.loading && filteredTypes.length === 0 && <p className="muted">No type matches.</p>}
              <table className="table table-compact">
                <caption className="sr-only">Instance types</caption>
                <thead>
                  <tr>
                    <th scope="col">Type</th>
                    <th scope="col">vCPUs</th>
                    <th scope="col">Memory</th>
                    <th scope="col">Architectures</th>
                  </tr>
                </thead>
                <tbody>
                  {filteredTypes.slice(0, MAX_TYPES_SHOWN).map((t) => {
                    const id = `type-${t.name}`;
                    return (
                      <tr key={t.name} className={t.compatible ? (t.name === s.instanceType ? 'row-selected' : '') : 'row-disabled'} title={t.reason}>
                        <td>
                          <input
                            type="radio"
                            id={id}
                            name="instance-type"
                            checked={t.name === s.instanceType}
                            disabled={!t.compatible}
                            onChange={() => set('instanceType', t.name)}
                            data-testid="type-option"
                            data-type={t.name}
                            aria-describedby={t.reason ? `${id}-why` : undefined}
                          />{' '}
                          <label htmlFor={id}>{t.name}</label>
                          {t.reason && (
                            <div id={`${id}-why`} className="reason">
                              {t.reason}
                            </div>
                          )}
                        </td>
                        <td>{t.vcpus}</td>
                        <td>{formatMemory(t.memoryMiB)}</td>
                        <td>{t.architectures.join(', ')}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
              {filteredTypes.length > MAX_TYPES_SHOWN && (
                <p className="muted small">
                  Showing {MAX_TYPES_SHOWN} of {filteredTypes.length} types; filter to narrow.
                </p>
              )}
            </div>
          </fieldset>

          <fieldset className="panel">
            <legend>Key pair (login)</legend>
            <div className="row">
              <Field label="Key pair name">
                {(id) => (
                  <select id={id} value={s.keyName} onChange={(e) => set('keyName', e.target.value)} data-testid="key-select">
                    <option value="">Proceed without a key pair</option>
                    {(keys.data?.KeyPairs ?? []).map((k) => (
                      <option key={k.KeyName} value={k.KeyName}>
                        {k.KeyName} ({k.KeyType})
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <div className="field field-button">
                <button type="button" onClick={() => setShowKeyCreator((v) => !v)} aria-expanded={showKeyCreator} data-testid="key-new">
                  Create new key pair
                </button>
              </div>
            </div>
            {showKeyCreator && (
              <KeyPairCreator
                onCreated={(k) => {
                  setCreatedKey(k);
                  setShowKeyCreator(false);
                  set('keyName', k.name);
                }}
              />
            )}
            {createdKey && <PemDownload created={createdKey} />}
          </fieldset>

          <fieldset className="panel">
            <legend>Network settings</legend>
            <div className="row">
              <Field label="VPC">
                {(id) => (
                  <select
                    id={id}
                    value={s.vpcId}
                    onChange={(e) => setS((o) => ({ ...o, vpcId: e.target.value, subnetId: '', existingGroupIds: [], autoPublicIp: null }))}
                    data-testid="vpc-select"
                  >
                    {!vpcs.data && <option value="">Loading…</option>}
                    {(vpcs.data?.Vpcs ?? []).map((v) => (
                      <option key={v.VpcId} value={v.VpcId}>
                        {v.VpcId} ({v.CidrBlock}){v.IsDefault ? ' — default' : ''}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label="Subnet">
                {(id) => (
                  <select id={id} value={s.subnetId} onChange={(e) => setS((o) => ({ ...o, subnetId: e.target.value, autoPublicIp: null }))} data-testid="subnet-select">
                    <option value="">No preference</option>
                    {(subnets.data ?? []).map((sn) => (
                      <option key={sn.SubnetId} value={sn.SubnetId}>
                        {sn.SubnetId} · {sn.AvailabilityZone} · {sn.CidrBlock}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
            </div>
            <ErrorBox error={vpcs.error ?? subnets.error} />
            <div className="check">
              <input id="public-ip" type="checkbox" checked={publicIp} onChange={(e) => set('autoPublicIp', e.target.checked)} data-testid="public-ip" />
              <label htmlFor="public-ip">Auto-assign public IP</label>
            </div>
            <div className="radio-row" role="radiogroup" aria-label="Firewall (security groups)">
              <div className="check check-inline">
                <input id="sg-new" type="radio" name="sg-mode" checked={s.sgMode === 'new'} onChange={() => set('sgMode', 'new')} data-testid="sg-mode-new" />
                <label htmlFor="sg-new">Create security group</label>
              </div>
              <div className="check check-inline">
                <input id="sg-existing" type="radio" name="sg-mode" checked={s.sgMode === 'existing'} onChange={() => set('sgMode', 'existing')} data-testid="sg-mode-existing" />
                <label htmlFor="sg-existing">Select existing security group</label>
              </div>
            </div>
            {s.sgMode === 'new' ? (
              <div className="subpanel">
                <div className="row">
                  <Field label="Security group name">
                    {(id) => <input id={id} value={s.newGroupName} onChange={(e) => set('newGroupName', e.target.value)} data-testid="sg-name" />}
                  </Field>
                  <Field label="Description">
                    {(id) => <input id={id} value={s.newGroupDescription} onChange={(e) => set('newGroupDescription', e.target.value)} placeholder="Created by the launch wizard" />}
                  </Field>
                </div>
                {(
                  [
                    ['ssh', 'Allow SSH traffic (port 22) from anywhere (0.0.0.0/0)'],
                    ['http', 'Allow HTTP traffic (port 80) from anywhere'],
                    ['https', 'Allow HTTPS traffic (port 443) from anywhere'],
                  ] as const
                ).map(([k, label]) => (
                  <div className="check" key={k}>
                    <input
                      id={`sg-${k}`}
                      type="checkbox"
                      checked={s.newGroupRules[k]}
                      onChange={(e) => set('newGroupRules', { ...s.newGroupRules, [k]: e.target.checked })}
                      data-testid={`sg-${k}`}
                    />
                    <label htmlFor={`sg-${k}`}>{label}</label>
                  </div>
                ))}
              </div>
            ) : (
              <div className="subpanel" role="group" aria-label="Security groups">
                {groups.loading && <Spinner />}
                {existingGroups.map((g) => (
                  <div className="check" key={g.GroupId}>
                    <input
                      id={`sg-pick-${g.GroupId}`}
                      type="checkbox"
                      checked={s.existingGroupIds.includes(g.GroupId ?? '')}
                      onChange={(e) =>
                        set('existingGroupIds', e.target.checked ? [...s.existingGroupIds, g.GroupId!] : s.existingGroupIds.filter((x) => x !== g.GroupId))
                      }
                      data-testid="sg-pick"
                      data-group-name={g.GroupName}
                      data-group-id={g.GroupId}
                    />
                    <label htmlFor={`sg-pick-${g.GroupId}`}>
                      {g.GroupName} <code>{g.GroupId}</code> <span className="muted">{g.Description}</span>
                    </label>
                  </div>
                ))}
              </div>
            )}
          </fieldset>

          <fieldset className="panel">
            <legend>Configure storage</legend>
            <div className="row">
              <Field label={`Root volume size (GiB)${root.deviceName ? ` for ${root.deviceName}` : ''}`} hint={root.sizeGiB ? `The AMI's size is ${root.sizeGiB} GiB.` : undefined}>
                {(id) => (
                  <input
                    id={id}
                    type="number"
                    min={root.sizeGiB ?? 1}
                    max={16384}
                    className="narrow"
                    value={s.rootSize === '' ? (root.sizeGiB ?? '') : s.rootSize}
                    onChange={(e) => set('rootSize', e.target.value === '' ? '' : Number(e.target.value))}
                    data-testid="root-size"
                  />
                )}
              </Field>
              <Field label="Volume type">
                {(id) => (
                  <select id={id} value={s.rootType} onChange={(e) => set('rootType', e.target.value)} data-testid="root-type">
                    {ROOT_VOLUME_TYPES.map((t) => (
                      <option key={t} value={t}>
                        {t}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
            </div>
            {s.extraVolumes.map((v, n) => {
              const setVol = (patch: Partial<ExtraVolume>) =>
                set('extraVolumes', s.extraVolumes.map((old, m) => (m === n ? { ...old, ...patch } : old)));
              const [min, max] = VOLUME_SIZE_LIMITS[v.volumeType] ?? [1, 16384];
              return (
                <div className="row extra-volume" key={v.deviceName} data-testid="extra-volume">
                  <Field label={`Volume ${n + 2} device`}>
                    {(id) => (
                      <select id={id} value={v.deviceName} onChange={(e) => setVol({ deviceName: e.target.value })}>
                        {[v.deviceName, ...DEVICE_LETTERS.map((c) => `/dev/sd${c}`).filter((d) => !s.extraVolumes.some((o) => o.deviceName === d))].map((d) => (
                          <option key={d} value={d}>
                            {d}
                          </option>
                        ))}
                      </select>
                    )}
                  </Field>
                  <Field label="Size (GiB)" hint={`${min}–${max} GiB for ${v.volumeType}.`}>
                    {(id) => (
                      <input id={id} type="number" className="narrow" min={min} max={max} value={v.sizeGiB} onChange={(e) => setVol({ sizeGiB: Number(e.target.value) })} data-testid="extra-volume-size" />
                    )}
                  </Field>
                  <Field label="Type">
                    {(id) => (
                      <select id={id} value={v.volumeType} onChange={(e) => setVol({ volumeType: e.target.value })} data-testid="extra-volume-type">
                        {EXTRA_VOLUME_TYPES.map((t) => (
                          <option key={t} value={t}>
                            {t}
                          </option>
                        ))}
                      </select>
                    )}
                  </Field>
                  <label className="check">
                    <input type="checkbox" checked={v.deleteOnTermination} onChange={(e) => setVol({ deleteOnTermination: e.target.checked })} /> Delete on termination
                  </label>
                  <button type="button" className="btn-link" onClick={() => set('extraVolumes', s.extraVolumes.filter((_, m) => m !== n))} aria-label={`Remove volume ${v.deviceName}`}>
                    Remove
                  </button>
                </div>
              );
            })}
            <button
              type="button"
              disabled={!newExtraVolume(s.extraVolumes, root.deviceName)}
              onClick={() => {
                const v = newExtraVolume(s.extraVolumes, root.deviceName);
                if (v) set('extraVolumes', [...s.extraVolumes, v]);
              }}
              data-testid="add-volume"
            >
              Add new volume
            </button>
          </fieldset>

          <details className="panel">
            <summary>Advanced details</summary>
            <Field label="User data" hint="Plain text; the console base64-encodes it.">
              {(id) => <textarea id={id} rows={5} className="mono" value={s.userData} onChange={(e) => set('userData', e.target.value)} data-testid="user-data" />}
            </Field>
            <div className="check">
              <input id="imdsv2" type="checkbox" checked={s.imdsv2Required} onChange={(e) => set('imdsv2Required', e.target.checked)} data-testid="imdsv2" />
              <label htmlFor="imdsv2">Require IMDSv2 (metadata tokens)</label>
            </div>
            <div className="row">
              <Field label="Shutdown behavior">
                {(id) => (
                  <select id={id} value={s.shutdownBehavior} onChange={(e) => set('shutdownBehavior', e.target.value as 'stop' | 'terminate')} data-testid="shutdown-behavior">
                    <option value="stop">Stop</option>
                    <option value="terminate">Terminate</option>
                  </select>
                )}
              </Field>
            </div>
            <div className="check">
              <input
                id="termination-protection"
                type="checkbox"
                checked={s.terminationProtection}
                onChange={(e) => set('terminationProtection', e.target.checked)}
                data-testid="termination-protection"
              />
              <label htmlFor="termination-protection">Termination protection</label>
            </div>
          </details>
        </div>

        <aside className="wizard-summary panel" aria-label="Summary">
          <h2>Summary</h2>
          <Field label="Number of instances">
            {(id) => (
              <input id={id} type="number" min={1} max={20} className="narrow" value={s.count} onChange={(e) => set('count', Math.floor(Number(e.target.value) || 0))} data-testid="count" />
            )}
          </Field>
          <dl className="summary-list">
            <dt>AMI</dt>
            <dd>{image ? `${image.Name} (${image.ImageId})` : '—'}</dd>
            <dt>Instance type</dt>
            <dd>{s.instanceType || '—'}</dd>
            <dt>Key pair</dt>
            <dd>{s.keyName || 'none'}</dd>
            <dt>Network</dt>
            <dd>
              {s.vpcId || '—'}, {s.subnetId || 'any subnet'}, {publicIp ? 'public IP' : 'no public IP'}
            </dd>
            <dt>Firewall</dt>
            <dd>
              {s.sgMode === 'new'
                ? `new group ${s.newGroupName}: ${ingressPermissions(s.newGroupRules).map((p) => p.FromPort).join(', ') || 'no inbound rules'}`
                : s.existingGroupIds.join(', ') || '—'}
            </dd>
            <dt>Storage</dt>
            <dd>
              {s.rootSize === '' ? (root.sizeGiB !== undefined ? `${root.sizeGiB} GiB` : 'the AMI\'s size,') : `${s.rootSize} GiB`} {s.rootType}
              {s.extraVolumes.map((v) => `, ${v.deviceName} ${v.sizeGiB} GiB ${v.volumeType}`).join('')}
            </dd>
          </dl>
          {problems.length > 0 && (
            <ul className="problems" data-testid="launch-problems">
              {problems.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          )}
          <ErrorBox error={launchError} testid="launch-error" title="Launch failed:" />
          {launching && <Notice>{launching}</Notice>}
          <button type="button" className="btn-primary btn-block" disabled={problems.length > 0 || !!launching} onClick={() => void launch()} data-testid="launch-submit">
            {launching ? 'Launching…' : 'Launch instance'}
          </button>
          {templateName === null ? (
            <button type="button" className="btn-block" disabled={problems.length > 0 || !!launching} onClick={() => { setSaved(null); setTemplateName(''); }} data-testid="template-save-open">
              Save as launch template
            </button>
          ) : (
            <form
              className="template-save"
              onSubmit={(e) => {
                e.preventDefault();
                if (!templateNameProblem(templateName.trim())) void saveTemplate(templateName.trim());
              }}
            >
              <Field label="Launch template name" hint={templateName && templateNameProblem(templateName.trim()) ? <span className="warn-text">{templateNameProblem(templateName.trim())}</span> : 'Counts are chosen at each launch.'}>
                {(id) => <input id={id} value={templateName} onChange={(e) => setTemplateName(e.target.value)} autoFocus data-testid="template-name" />}
              </Field>
              <div className="actionbar">
                <button type="button" onClick={() => setTemplateName(null)}>
                  Cancel
                </button>
                <button type="submit" className="btn-primary" disabled={!!templateNameProblem(templateName.trim()) || !!launching} data-testid="template-save">
                  Save
                </button>
              </div>
            </form>
          )}
          {saved && (
            <Notice kind="ok" testid="template-saved">
              {saved} <a href={href('templates')}>See launch templates</a>.
            </Notice>
          )}
        </aside>
      </div>
    </section>
  );
}
