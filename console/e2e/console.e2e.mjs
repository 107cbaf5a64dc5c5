// End-to-end test of the Kiln console against a running `kiln serve`.
//
//   KILN_ENDPOINT=http://127.0.0.1:8080 KILN_ACCOUNT=NAME KILN_PASSWORD=PW \
//   SCREENSHOT_DIR=/tmp/shots npm run e2e
//
// Drives /usr/bin/chromium through playwright-core: signs in, launches an instance from
// the Quick Start kiln-tiny-x86_64 AMI with a new key pair and security group, watches
// it boot, reads its console, creates an image, launches from that image, terminates
// both, signs out and checks that the session's credentials stopped working. It boots
// real VMs (under TCG emulation on machines without KVM), so its waits are generous.
// Optional: E2E_TIMEOUT_S (overall limit, default 600), E2E_HEADFUL=1.

import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  DeleteKeyPairCommand, DeleteSecurityGroupCommand, DeleteSnapshotCommand, DeleteVolumeCommand, DeleteVpcCommand, DeregisterImageCommand,
  DescribeAddressesCommand, DescribeImagesCommand, DescribeInstancesCommand, DescribeSecurityGroupsCommand, DescribeVolumesCommand,
  DeleteLaunchTemplateCommand, DetachVolumeCommand, DisassociateAddressCommand, EC2Client, ReleaseAddressCommand, TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';

const ENDPOINT = (process.env.KILN_ENDPOINT ?? '').replace(/\/+$/, '');
const ACCOUNT = process.env.KILN_ACCOUNT ?? '';
const PASSWORD = process.env.KILN_PASSWORD ?? '';
const SHOTS = process.env.SCREENSHOT_DIR ?? '';
const TOTAL_S = Number(process.env.E2E_TIMEOUT_S ?? 600);

if (!ENDPOINT || !ACCOUNT || !PASSWORD) {
  console.error('e2e: set KILN_ENDPOINT, KILN_ACCOUNT and KILN_PASSWORD (and optionally SCREENSHOT_DIR).');
  process.exit(2);
}
if (SHOTS) mkdirSync(SHOTS, { recursive: true });

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
const log = (msg) => console.log(`[${elapsed()}s] ${msg}`);
const stamp = `${new Date().toISOString().replace(/[-:T]/g, '').slice(4, 14)}-${Math.random().toString(36).slice(2, 6)}`;
const names = {
  instanceA: `e2e-${stamp}-a`,
  instanceB: `e2e-${stamp}-b`,
  key: `e2e-key-${stamp}`,
  group: `e2e-sg-${stamp}`,
  image: `e2e-img-${stamp}`,
  importedKey: `e2e-imported-${stamp}`,
  template: `e2e-lt-${stamp}`,
};
const created = { instances: [], imageId: null, copy: null, vpc: null, volumes: [], snapshots: [], addresses: [], templates: [] };
const browserErrors = [];

const overall = setTimeout(() => {
  console.error(`[${elapsed()}s] FAIL: the whole test took longer than ${TOTAL_S} s`);
  process.exit(1);
}, TOTAL_S * 1000);

class StepFailure extends Error {}

let page;
let currentStep = '';

async function step(name, fn) {
  currentStep = name;
  log(`STEP ${name}`);
  const s = Date.now();
  try {
    const r = await fn();
    log(`  ok ${name} (${((Date.now() - s) / 1000).toFixed(1)} s)`);
    return r;
  } catch (e) {
    throw new StepFailure(`step "${name}" failed after ${((Date.now() - s) / 1000).toFixed(1)} s: ${e?.message ?? e}`);
  }
}

async function shot(file) {
  if (!SHOTS || !page) return;
  await page.screenshot({ path: join(SHOTS, file) });
  log(`  screenshot ${file}`);
}

/** Polls fn until it returns a truthy value; fails with `what` after timeoutMs. */
async function until(what, timeoutMs, fn, intervalMs = 500) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Fails at once if the page shows an inline API error. */
async function noInlineError(testid) {
  const err = page.locator(`[data-testid="${testid}"]`);
  if (await err.count()) throw new Error(`the console shows: ${(await err.first().innerText()).trim()}`);
}

const row = (id) => page.locator(`[data-testid="instance-row"][data-instance-id="${id}"]`);

/** Watches an instance row until its state is `target`; returns the states seen in order. */
async function watchState(id, target, timeoutMs) {
  const seen = [];
  await until(`${id} to be ${target} (seen: ${seen.join(' → ') || 'nothing'})`, timeoutMs, async () => {
    if (!(await row(id).count())) return false;
    const s = await attr(row(id), 'data-state');
    if (s && seen[seen.length - 1] !== s) {
      seen.push(s);
      log(`  ${id}: ${s}`);
    }
    if (s === 'terminated' && target !== 'terminated') throw new Error(`${id} terminated (${seen.join(' → ')})`);
    return s === target;
  });
  return seen;
}

/** An attribute of a locator that may come and go (null when absent). */
async function attr(locator, name) {
  if (!(await locator.count())) return null;
  return locator.getAttribute(name, { timeout: 1000 }).catch(() => null);
}

async function gotoPage(nav, readySelector) {
  await page.click(`[data-testid="nav-${nav}"]`);
  await page.waitForSelector(readySelector, { timeout: 30_000 });
}

/** Fills the wizard fields common to both launches and launches; returns the instance id. */
async function launchFromWizard({ name, keyName, newGroup, existingGroup, extraVolume, saveTemplate }) {
  await page.fill('[data-testid="launch-name"]', name);
  await page.fill('[data-testid="type-search"]', 't3.micro');
  const type = page.locator('[data-testid="type-option"][data-type="t3.micro"]');
  await type.waitFor({ timeout: 60_000 });
  if (await type.isDisabled()) throw new Error('t3.micro is disabled for this AMI');
  await type.check();
  if (keyName) await page.selectOption('[data-testid="key-select"]', keyName);
  if (newGroup) {
    await page.check('[data-testid="sg-mode-new"]');
    await page.fill('[data-testid="sg-name"]', newGroup);
    await page.check('[data-testid="sg-ssh"]');
    await page.check('[data-testid="sg-http"]');
    await page.uncheck('[data-testid="sg-https"]');
  } else {
    await page.check('[data-testid="sg-mode-existing"]');
    const pick = page.locator(`[data-testid="sg-pick"][data-group-name="${existingGroup}"]`);
    await pick.waitFor({ timeout: 30_000 });
    await pick.check();
  }
  if (extraVolume) {
    await page.click('[data-testid="add-volume"]');
    const v = page.locator('[data-testid="extra-volume"]');
    await v.waitFor();
    await v.locator('[data-testid="extra-volume-size"]').fill('3');
  }
  const submit = page.locator('[data-testid="launch-submit"]');
  await until('the Launch button to be enabled', 60_000, async () => {
    if (await submit.isEnabled()) return true;
    const p = page.locator('[data-testid="launch-problems"]');
    if (await p.count()) log(`  waiting; the wizard says: ${(await p.innerText()).replace(/\n/g, '; ')}`);
    return false;
  }, 1000);
  if (saveTemplate) {
    // Saved before launching: the template's new security group is the launch's too.
    await page.click('[data-testid="template-save-open"]');
    await page.fill('[data-testid="template-name"]', saveTemplate);
    await page.click('[data-testid="template-save"]');
    created.templates.push(saveTemplate);
    const saved = page.locator('[data-testid="template-saved"]');
    await until(`launch template ${saveTemplate} to be saved`, 30_000, async () => {
      await noInlineError('launch-error');
      return saved.count();
    });
    log(`  ${(await saved.innerText()).trim()}`);
  }
  await shot(newGroup ? 'launch.png' : 'launch-from-image.png');
  await submit.click();
  await until('the Instances page after Launch', 120_000, async () => {
    await noInlineError('launch-error');
    return page.url().includes('#/instances');
  });
  const launched = new URL(page.url().replace('#/', '')).searchParams.get('launched');
  if (!launched) throw new Error(`no launched instance id in ${page.url()}`);
  const id = launched.split(',')[0];
  created.instances.push(id);
  log(`  launched ${id}`);
  return id;
}

async function selectOnly(id) {
  await row(id).locator('td[data-col="type"]').click();
  await until(`${id} alone to be selected`, 10_000, async () => (await page.locator('[data-testid="instance-row"][data-selected="true"]').count()) === 1 && (await attr(row(id), 'data-selected')) === 'true');
}

/** An SDK client of its own session, to check what the pages did and to clean up. */
async function sdk() {
  const res = await fetch(`${ENDPOINT}/console/api/signin`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account: ACCOUNT, password: PASSWORD }),
  });
  if (!res.ok) throw new Error(`sign-in for the SDK answered ${res.status}`);
  const creds = await res.json();
  return new EC2Client({
    region: 'us-east-1',
    endpoint: ENDPOINT,
    credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken },
  });
}

async function cleanup() {
  log('cleanup (best effort)');
  let ec2;
  try {
    ec2 = await sdk();
  } catch (e) {
    log(`  cleanup: cannot sign in: ${e.message}`);
    return;
  }
  const tryIt = async (what, fn) => {
    try {
      await fn();
      log(`  cleanup: ${what}`);
    } catch (e) {
      log(`  cleanup: ${what} failed: ${e.name}: ${e.message}`);
    }
  };
  if (created.instances.length) {
    const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: created.instances })).catch(() => null);
    const live = (out?.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => i.State?.Name !== 'terminated').map((i) => i.InstanceId);
    if (live.length) await tryIt(`terminate ${live.join(', ')}`, () => ec2.send(new TerminateInstancesCommand({ InstanceIds: live })));
  }
  for (const id of created.addresses.filter(Boolean)) {
    await tryIt(`release ${id}`, async () => {
      const out = await ec2.send(new DescribeAddressesCommand({ AllocationIds: [id] }));
      const a = out.Addresses?.[0];
      if (a?.AssociationId) await ec2.send(new DisassociateAddressCommand({ AssociationId: a.AssociationId }));
      await ec2.send(new ReleaseAddressCommand({ AllocationId: id }));
    });
  }
  for (const id of created.snapshots) await tryIt(`delete ${id}`, () => ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })));
  for (const id of created.volumes) {
    await tryIt(`delete ${id}`, async () => {
      const out = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }));
      if (out.Volumes?.[0]?.Attachments?.length) await ec2.send(new DetachVolumeCommand({ VolumeId: id, Force: true }));
      await ec2.send(new DeleteVolumeCommand({ VolumeId: id }));
    });
  }
  const images = await ec2.send(new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [names.image] }] })).catch(() => null);
  for (const im of images?.Images ?? []) {
    await tryIt(`deregister ${im.ImageId}`, () => ec2.send(new DeregisterImageCommand({ ImageId: im.ImageId })));
    for (const b of im.BlockDeviceMappings ?? []) {
      if (b.Ebs?.SnapshotId) await tryIt(`delete ${b.Ebs.SnapshotId}`, () => ec2.send(new DeleteSnapshotCommand({ SnapshotId: b.Ebs.SnapshotId })));
    }
  }
  if (created.copy) {
    const west = new EC2Client({ region: 'us-west-2', endpoint: ENDPOINT, credentials: ec2.config.credentials });
    const end = Date.now() + 60_000;
    for (;;) {
      const out = await west.send(new DescribeImagesCommand({ ImageIds: [created.copy] })).catch(() => null);
      const im = out?.Images?.[0];
      if (!im || im.State !== 'pending' || Date.now() > end) {
        if (im) {
          await tryIt(`deregister ${created.copy} in us-west-2`, () => west.send(new DeregisterImageCommand({ ImageId: created.copy })));
          for (const b of im.BlockDeviceMappings ?? []) {
            if (b.Ebs?.SnapshotId) await tryIt(`delete ${b.Ebs.SnapshotId} in us-west-2`, () => west.send(new DeleteSnapshotCommand({ SnapshotId: b.Ebs.SnapshotId })));
          }
        }
        break;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    west.destroy();
  }
  for (const name of created.templates) await tryIt(`delete launch template ${name}`, () => ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateName: name })));
  if (created.vpc) await tryIt(`delete ${created.vpc}`, () => ec2.send(new DeleteVpcCommand({ VpcId: created.vpc })));
  await tryIt(`delete key pair ${names.key}`, () => ec2.send(new DeleteKeyPairCommand({ KeyName: names.key })));
  const groups = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [names.group] }] })).catch(() => null);
  for (const g of groups?.SecurityGroups ?? []) {
    // Instances still shutting down keep the group in use for a while.
    const end = Date.now() + 90_000;
    for (;;) {
      try {
        await ec2.send(new DeleteSecurityGroupCommand({ GroupId: g.GroupId }));
        log(`  cleanup: delete security group ${g.GroupId}`);
        break;
      } catch (e) {
        if (e.name !== 'DependencyViolation' || Date.now() > end) {
          log(`  cleanup: delete security group ${g.GroupId} failed: ${e.name}: ${e.message}`);
          break;
        }
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }
  ec2.destroy();
}

async function main() {
  log(`e2e against ${ENDPOINT} as ${ACCOUNT}; names use ${stamp}`);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: !process.env.E2E_HEADFUL,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let ok = false;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (e) => browserErrors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') browserErrors.push(`console: ${m.text()}`);
    });
    page.on('requestfailed', (r) => {
      // Outside requests would break the no-CDN rule; report them.
      if (!r.url().startsWith(ENDPOINT) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) browserErrors.push(`outside request: ${r.url()}`);
    });
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(ENDPOINT) && !u.startsWith('blob:') && !u.startsWith('data:')) browserErrors.push(`outside request: ${u}`);
    });

    await step('1. open the console and sign in', async () => {
      await page.goto(`${ENDPOINT}/console/`);
      await page.waitForSelector('[data-testid="signin-account"]');
      await shot('signin.png');
      // A wrong password shows EC2-style AuthFailure on the page (one failure; a success clears it).
      await page.fill('[data-testid="signin-account"]', ACCOUNT);
      await page.fill('[data-testid="signin-password"]', `${PASSWORD}-wrong`);
      await page.click('[data-testid="signin-submit"]');
      const bad = page.locator('[data-testid="signin-error"]');
      await bad.waitFor({ timeout: 30_000 });
      if ((await bad.getAttribute('data-code')) !== 'AuthFailure') throw new Error(`a wrong password shows: ${await bad.innerText()}`);
      log(`  wrong password: ${(await bad.innerText()).trim()}`);
      await shot('signin-error.png');
      await page.fill('[data-testid="signin-account"]', ACCOUNT);
      await page.fill('[data-testid="signin-password"]', PASSWORD);
      await page.click('[data-testid="signin-submit"]');
      await until('the dashboard', 30_000, async () => {
        const err = page.locator('[data-testid="signin-error"]');
        if (await err.count()) throw new Error(`sign-in refused: ${await err.innerText()}`);
        return page.locator('[data-testid="nav-dashboard"]').count();
      });
      await until('the dashboard counts', 30_000, async () => (await page.locator('[data-testid="count-running"] .card-value').innerText()) !== '…');
      await noInlineError('error');
      const regions = await page.locator('[data-testid="region-select"] option').count();
      log(`  region selector lists ${regions} regions`);
      if (regions < 2) throw new Error('the region selector lists fewer than two regions');
      // The operator sees the host's capacity beside its own quota.
      const hostCpu = page.locator('[data-testid="capacity-host-vcpus"]');
      await hostCpu.waitFor({ timeout: 30_000 });
      const quota = (await page.locator('[data-testid="capacity-quota"]').innerText()).replace(/\s+/g, ' ');
      if (!/\d+ vCPUs of \d+ vCPUs/.test(quota)) throw new Error(`the quota meter says: ${quota}`);
      const mem = (await page.locator('[data-testid="capacity-host-memory"]').innerText()).replace(/\s+/g, ' ');
      if (!/of [\d.]+ GiB/.test(mem)) throw new Error(`the host memory meter says: ${mem}`);
      log(`  capacity: ${quota}; ${(await hostCpu.innerText()).replace(/\s+/g, ' ')}; ${mem}`);
      await shot('dashboard.png');
    });

    let idA;
    let extraVolumeId;
    await step('2. launch from Quick Start kiln-tiny-x86_64 with a new key pair and security group', async () => {
      await gotoPage('launch', '[data-testid="ami-search"]');
      await page.fill('[data-testid="ami-search"]', 'kiln-tiny-x86_64');
      const ami = page.locator('[data-testid="ami-option"][data-ami-name^="kiln-tiny-x86_64"]').first();
      await ami.waitFor({ timeout: 30_000 });
      const amiName = await ami.getAttribute('data-ami-name');
      await ami.check();
      await until('the AMI to be selected', 10_000, async () => (await page.locator('[data-testid="selected-ami"]').innerText()).includes(amiName));
      log(`  AMI ${await ami.getAttribute('data-ami-id')} (${amiName})`);

      await page.click('[data-testid="key-new"]');
      await page.fill('[data-testid="key-name"]', names.key);
      await page.click('[data-testid="key-create"]');
      const link = page.locator('[data-testid="download-pem"]');
      await until('the PEM download link', 30_000, async () => {
        await noInlineError('key-error');
        return link.count();
      });
      const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
      if (download.suggestedFilename() !== `${names.key}.pem`) throw new Error(`the download is named ${download.suggestedFilename()}`);
      const pem = readFileSync(await download.path(), 'utf8');
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) throw new Error('the downloaded file is not a PEM private key');
      await until('the download link to go away (offered once)', 10_000, async () => (await link.count()) === 0);
      const chosen = await page.locator('[data-testid="key-select"]').inputValue();
      if (chosen !== names.key) throw new Error(`the new key is not selected (${chosen})`);
      log(`  key pair ${names.key} created; PEM downloaded once (${pem.length} bytes)`);

      idA = await launchFromWizard({ name: names.instanceA, newGroup: names.group, extraVolume: true, saveTemplate: names.template });
    });

    await step('3. watch the instance go from pending to running', async () => {
      await row(idA).waitFor({ timeout: 30_000 });
      await page.selectOption('[data-testid="state-filter"]', '');
      const seen = await watchState(idA, 'running', 300_000);
      if (seen[0] !== 'pending') log(`  note: the first state seen was ${seen[0]}, not pending`);
      await selectOnly(idA);
      await shot('instances.png');

      // Type and tag filters, and a chosen column that stays chosen after a reload.
      await page.selectOption('[data-testid="type-filter"]', 't3.micro');
      await row(idA).waitFor();
      await page.fill('[data-testid="tag-filter"]', `Name=${names.instanceA}-nope`);
      await row(idA).waitFor({ state: 'detached' });
      await page.fill('[data-testid="tag-filter"]', `Name=${names.instanceA}`);
      await row(idA).waitFor();
      if ((await page.locator('[data-testid="instance-row"]').count()) !== 1) throw new Error('the Name tag filter shows more than one instance');
      await page.click('[data-testid="column-chooser"] summary');
      await page.check('[data-testid="column-key"]');
      await page.uncheck('[data-testid="column-ami"]');
      await shot('instances-columns.png');
      await page.reload();
      await row(idA).waitFor({ timeout: 30_000 });
      const keyCell = (await row(idA).locator('td[data-col="key"]').innerText()).trim();
      if (keyCell !== names.key) throw new Error(`the chosen Key pair column shows "${keyCell}"`);
      if (await row(idA).locator('td[data-col="ami"]').count()) throw new Error('the AMI column is still shown after unchoosing it');
      await page.click('[data-testid="column-chooser"] summary');
      await page.uncheck('[data-testid="column-key"]');
      await page.check('[data-testid="column-ami"]');
      await page.click('[data-testid="column-chooser"] summary');
      await page.selectOption('[data-testid="type-filter"]', '');
      await page.fill('[data-testid="tag-filter"]', '');
      await page.selectOption('[data-testid="state-filter"]', '');
      log('  type and tag filters narrow the table; the Key pair column was chosen and kept across a reload');

      // The wizard's added volume: a second disk, attached as /dev/sdf, 3 GiB gp3.
      const ec2 = await sdk();
      try {
        const vols = (await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [idA] }] }))).Volumes ?? [];
        const extra = vols.find((v) => v.Attachments?.[0]?.Device === '/dev/sdf');
        if (!extra || extra.Size !== 3 || extra.VolumeType !== 'gp3' || !extra.Attachments[0].DeleteOnTermination) {
          throw new Error(`${idA} has no 3 GiB gp3 /dev/sdf deleted on termination: ${JSON.stringify(vols.map((v) => [v.VolumeId, v.Size, v.VolumeType, v.Attachments]))}`);
        }
        extraVolumeId = extra.VolumeId;
        log(`  ${extra.VolumeId} (3 GiB gp3) attached to ${idA} as /dev/sdf`);
      } finally {
        ec2.destroy();
      }
    });

    await step('4. console output shows "kiln-tiny: ready"', async () => {
      await page.click('[data-testid="action-console"]');
      const out = page.locator('[data-testid="console-output"]');
      await out.waitFor();
      await until('"kiln-tiny: ready" in the console output', 300_000, async () => (await out.innerText()).includes('kiln-tiny: ready'), 1000);
      await shot('console-output.png');
      await page.click('[data-testid="console-close"]');
      await page.locator('[data-testid="console-dialog"]').waitFor({ state: 'detached' });
    });

    let imageId;
    await step('5a. create an image from the instance', async () => {
      await selectOnly(idA);
      await page.click('[data-testid="action-create-image"]');
      await page.fill('[data-testid="image-name"]', names.image);
      await page.click('[data-testid="create-image-submit"]');
      const flash = page.locator('[data-testid="flash"]');
      await until('the create-image confirmation', 60_000, async () => {
        await noInlineError('create-image-error');
        return (await flash.count()) && /ami-[0-9a-f]+/.test(await flash.innerText());
      });
      imageId = /ami-[0-9a-f]+/.exec(await flash.innerText())[0];
      created.imageId = imageId;
      log(`  image ${imageId}`);
    });

    await step('5b. wait on My AMIs for the image to become available', async () => {
      await gotoPage('amis', '[data-testid="ami-tab-mine"]');
      await page.click('[data-testid="ami-tab-mine"]');
      const r = page.locator(`[data-testid="ami-row"][data-ami-id="${imageId}"]`);
      await r.waitFor({ timeout: 60_000 });
      let last = '';
      await until(`${imageId} to be available`, 480_000, async () => {
        const s = await attr(r, 'data-state');
        if (s !== last) log(`  ${imageId}: ${(last = s)}`);
        if (s === 'failed') throw new Error(`${imageId} failed`);
        return s === 'available';
      }, 1000);
      await r.locator('td[data-col="name"]').click();
      await page.locator('[data-testid="ami-details"]').waitFor();
      await shot('amis.png');
    });

    await step('5b+. share the image, make it public and private, copy it to us-west-2', async () => {
      await page.click('[data-testid="action-share"]');
      const dlg = page.locator('[data-testid="share-dialog"]');
      await dlg.waitFor();
      // Kiln shares only with accounts it knows: use the Quick Start provider's (found with this session's credentials).
      const sess = JSON.parse((await page.evaluate(() => sessionStorage.getItem('kiln.session'))) ?? '{}');
      const probe = new EC2Client({
        region: 'us-east-1',
        endpoint: ENDPOINT,
        credentials: { accessKeyId: sess.accessKeyId, secretAccessKey: sess.secretAccessKey, sessionToken: sess.sessionToken },
      });
      const qs = await probe.send(new DescribeImagesCommand({ Owners: ['amazon'] }));
      probe.destroy();
      const other = (qs.Images ?? []).map((i) => i.OwnerId).find((o) => o && o !== sess.accountId);
      if (other) {
        await page.fill('[data-testid="share-account"]', other);
        await page.click('[data-testid="share-add"]');
        await until(`the share with ${other} to show`, 30_000, async () => {
          await noInlineError('error');
          return (await page.locator('[data-testid="shared-accounts"]').innerText()).includes(other);
        });
        await page.locator('[data-testid="shared-accounts"] button', { hasText: 'Remove' }).click();
        await until(`the share with ${other} to go`, 30_000, async () => !(await page.locator('[data-testid="shared-accounts"]').innerText()).includes(other));
        log(`  shared with ${other}, then unshared`);
      } else {
        log('  no other account to share with; sharing skipped');
      }
      const toggle = page.locator('[data-testid="toggle-public"]');
      await until('the image to be private first', 30_000, async () => (await toggle.innerText()).includes('Make public'));
      await toggle.click();
      await until('the image to be public', 30_000, async () => (await toggle.innerText()).includes('Make private'));
      await shot('ami-permissions.png');
      await toggle.click();
      await until('the image to be private again', 30_000, async () => (await toggle.innerText()).includes('Make public'));
      await noInlineError('error');
      await dlg.locator('button[aria-label="Close"]').click();
      await dlg.waitFor({ state: 'detached' });
      log('  made public, then private again');
      await page.click('[data-testid="action-copy"]');
      await page.selectOption('[data-testid="copy-region"]', 'us-west-2');
      await page.click('[data-testid="copy-submit"]');
      const flash = page.locator('.flash-slot .notice');
      await until('the copy to start', 60_000, async () => {
        await noInlineError('error');
        return (await flash.count()) && /ami-[0-9a-f]+/.test(await flash.innerText());
      });
      created.copy = /ami-[0-9a-f]+/.exec(await flash.innerText())[0];
      log(`  copying to us-west-2 as ${created.copy}`);
    });

    let idB;
    await step('5c. launch from the new image and see it run', async () => {
      await page.click('[data-testid="action-launch-ami"]');
      await until('the wizard with the image preselected', 30_000, async () => {
        const sel = page.locator('[data-testid="selected-ami"]');
        return (await sel.count()) && (await sel.innerText()).includes(imageId);
      });
      idB = await launchFromWizard({ name: names.instanceB, keyName: names.key, existingGroup: names.group });
      await row(idB).waitFor({ timeout: 30_000 });
      await page.selectOption('[data-testid="state-filter"]', '');
      await watchState(idB, 'running', 300_000);
    });

    await step('5d. volumes, snapshots and Elastic IPs with the running instance', async () => {
      const zone = (await row(idB).locator('td[data-col="zone"]').innerText()).trim();
      // A volume: create, attach, detach, snapshot, delete.
      await gotoPage('volumes', '[data-testid="volumes-table"]');
      await page.click('[data-testid="volume-create-open"]');
      await page.fill('[data-testid="volume-size"]', '2');
      await page.selectOption('[data-testid="volume-zone"]', zone);
      await page.click('[data-testid="volume-create-submit"]');
      const flash = page.locator('.flash-slot .notice');
      await until('the new volume id', 30_000, async () => {
        await noInlineError('error');
        return (await flash.count()) && /vol-[0-9a-f]+/.test(await flash.innerText());
      });
      const vol = /vol-[0-9a-f]+/.exec(await flash.innerText())[0];
      created.volumes.push(vol);
      const vrow = page.locator(`[data-testid="volume-row"][data-volume-id="${vol}"]`);
      const volState = (want, ms = 120_000) =>
        until(`${vol} to be ${want}`, ms, async () => {
          await noInlineError('error');
          return (await attr(vrow, 'data-state')) === want;
        });
      await volState('available');
      await vrow.locator('td[data-col="id"]').click();
      await page.click('[data-testid="volume-attach"]');
      await page.selectOption('[data-testid="volume-attach-instance"]', idB);
      // idB came from idA's image, which holds idA's added /dev/sdf: the dialog offers the next free device.
      const device = await page.inputValue('[data-testid="volume-attach-device"]');
      if (device !== '/dev/sdg') throw new Error(`the attach dialog offers ${device}, not /dev/sdg`);
      await page.click('[data-testid="volume-attach-submit"]');
      await volState('in-use');
      log(`  ${vol} attached to ${idB}`);
      await shot('volumes.png');
      await page.click('[data-testid="volume-detach"]');
      await page.click('[data-testid="confirm-ok"]');
      await volState('available');
      log(`  ${vol} detached`);
      await page.click('[data-testid="volume-snapshot"]');
      await page.click('[data-testid="snapshot-create-submit"]');
      await until('the new snapshot id', 30_000, async () => /snap-[0-9a-f]+/.test(await flash.innerText()));
      const snap = /snap-[0-9a-f]+/.exec(await flash.innerText())[0];
      created.snapshots.push(snap);
      await gotoPage('snapshots', '[data-testid="snapshots-table"]');
      const srow = page.locator(`[data-testid="snapshot-row"][data-snapshot-id="${snap}"]`);
      await until(`${snap} to complete`, 180_000, async () => (await attr(srow, 'data-state')) === 'completed');
      await shot('snapshots.png');
      await srow.locator('td[data-col="id"]').click();
      await page.click('[data-testid="snapshot-delete"]');
      await page.click('[data-testid="confirm-ok"]');
      await srow.waitFor({ state: 'detached', timeout: 30_000 });
      created.snapshots = created.snapshots.filter((x) => x !== snap);
      log(`  ${snap} completed and deleted`);
      await gotoPage('volumes', '[data-testid="volumes-table"]');
      await vrow.locator('td[data-col="id"]').click();
      await page.click('[data-testid="volume-delete"]');
      await page.click('[data-testid="confirm-ok"]');
      await until(`${vol} to go`, 60_000, async () => (await vrow.count()) === 0 || (await attr(vrow, 'data-state')) === 'deleted');
      created.volumes = created.volumes.filter((x) => x !== vol);
      log(`  ${vol} deleted`);

      // An Elastic IP: allocate, associate, disassociate, release.
      await gotoPage('addresses', '[data-testid="eip-table"]');
      await page.click('[data-testid="eip-allocate"]');
      await until('the allocated address', 30_000, async () => {
        await noInlineError('error');
        return (await flash.count()) && /Allocated \d+\.\d+\.\d+\.\d+/.test(await flash.innerText());
      });
      const ip = /Allocated (\d+\.\d+\.\d+\.\d+)/.exec(await flash.innerText())[1];
      const erow = page.locator(`[data-testid="eip-row"][data-public-ip="${ip}"]`);
      created.addresses.push(await erow.getAttribute('data-allocation-id'));
      await erow.locator('td[data-col="ip"]').click();
      await page.click('[data-testid="eip-associate"]');
      await page.selectOption('[data-testid="eip-instance"]', idB);
      await page.click('[data-testid="eip-associate-submit"]');
      await until(`${ip} to be associated with ${idB}`, 30_000, async () => (await attr(erow, 'data-instance-id')) === idB);
      await shot('elastic-ips.png');
      await gotoPage('instances', '[data-testid="instances-table"]');
      await until(`${idB} to show ${ip}`, 30_000, async () => (await row(idB).locator('td[data-col="public"]').innerText()).trim() === ip);
      log(`  ${ip} associated with ${idB}`);
      await gotoPage('addresses', '[data-testid="eip-table"]');
      await erow.locator('td[data-col="ip"]').click();
      await page.click('[data-testid="eip-disassociate"]');
      await page.click('[data-testid="confirm-ok"]');
      await until(`${ip} to be free`, 30_000, async () => (await attr(erow, 'data-instance-id')) === '');
      await page.click('[data-testid="eip-release"]');
      await page.click('[data-testid="confirm-ok"]');
      await erow.waitFor({ state: 'detached', timeout: 30_000 });
      created.addresses = [];
      log(`  ${ip} disassociated and released`);
      await gotoPage('instances', '[data-testid="instances-table"]');
    });

    await step('6. terminate both (with confirmation) and see them terminated', async () => {
      await page.selectOption('[data-testid="state-filter"]', '');
      await selectOnly(idA);
      await row(idB).locator('[data-testid="row-select"]').check();
      await page.click('[data-testid="action-terminate"]');
      const dialog = page.locator('[data-testid="confirm-dialog"]');
      await dialog.waitFor();
      const text = await dialog.innerText();
      if (!text.includes(idA) || !text.includes(idB)) throw new Error(`the confirmation does not name both instances: ${text}`);
      await shot('terminate-confirm.png');
      await page.click('[data-testid="confirm-ok"]');
      await dialog.waitFor({ state: 'detached', timeout: 30_000 });
      const [a, b] = await Promise.all([watchState(idA, 'terminated', 300_000), watchState(idB, 'terminated', 300_000)]);
      log(`  ${idA}: ${a.join(' → ')}; ${idB}: ${b.join(' → ')}`);
      await shot('instances-terminated.png');
      const ec2 = await sdk();
      try {
        await until(`${extraVolumeId} (DeleteOnTermination) to be deleted`, 60_000, async () => {
          try {
            const v = (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [extraVolumeId] }))).Volumes?.[0];
            return !v || v.State === 'deleted';
          } catch (e) {
            if (e.name === 'InvalidVolume.NotFound') return true;
            throw e;
          }
        });
        log(`  ${extraVolumeId} went with ${idA}`);
      } finally {
        ec2.destroy();
      }
    });

    await step('6b. launch from the saved launch template, then delete the template', async () => {
      await gotoPage('templates', '[data-testid="templates-table"]');
      const t = page.locator(`[data-testid="template-row"][data-template-name="${names.template}"]`);
      await t.waitFor({ timeout: 30_000 });
      await t.locator('td[data-col="name"]').click();
      const details = page.locator('[data-testid="template-details"]');
      await until('the version details', 30_000, async () => (await details.innerText()).includes('/dev/sdf'));
      const text = await details.innerText();
      for (const want of ['t3.micro', names.key, '3 GiB gp3', `Name=${names.instanceA}`]) {
        if (!text.includes(want)) throw new Error(`the template's version 1 lacks ${want}: ${text}`);
      }
      await shot('launch-templates.png');
      await page.click('[data-testid="template-launch"]');
      await page.fill('[data-testid="template-count"]', '1');
      await page.click('[data-testid="confirm-ok"]');
      await until('the Instances page after launching from the template', 120_000, async () => {
        const d = page.locator('[data-testid="confirm-dialog"] .error');
        if (await d.count()) throw new Error(`launch from template failed: ${await d.innerText()}`);
        return page.url().includes('#/instances');
      });
      const idC = new URL(page.url().replace('#/', '')).searchParams.get('launched');
      if (!idC) throw new Error(`no launched instance id in ${page.url()}`);
      created.instances.push(idC);
      await row(idC).waitFor({ timeout: 30_000 });
      const name = (await row(idC).locator('td[data-col="name"]').innerText()).trim();
      if (name !== names.instanceA) throw new Error(`the template's Name tag did not carry over: "${name}"`);
      await page.selectOption('[data-testid="state-filter"]', '');
      await watchState(idC, 'running', 300_000);
      await selectOnly(idC);
      await page.click('[data-testid="action-terminate"]');
      await page.click('[data-testid="confirm-ok"]');
      await watchState(idC, 'terminated', 300_000);
      log(`  ${idC} launched from ${names.template} (tags, key and volume from the template), then terminated`);
      await gotoPage('templates', '[data-testid="templates-table"]');
      await t.locator('td[data-col="name"]').click();
      await page.click('[data-testid="template-delete"]');
      await page.click('[data-testid="confirm-ok"]');
      await t.waitFor({ state: 'detached', timeout: 30_000 });
      created.templates = created.templates.filter((n) => n !== names.template);
      log(`  ${names.template} deleted`);
    });

    await step('visit the other pages', async () => {
      await gotoPage('keypairs', '[data-testid="keypairs-table"]');
      await page.locator(`[data-testid="keypair-row"][data-key-name="${names.key}"]`).waitFor();
      await shot('keypairs.png');
      await gotoPage('security-groups', '[data-testid="sg-table"]');
      const g = page.locator(`[data-testid="sg-row"][data-group-name="${names.group}"]`);
      await g.waitFor();
      await g.locator('td[data-col="name"]').click();
      const rules = page.locator('[data-testid="sg-rules"]');
      await rules.waitFor();
      const txt = await rules.innerText();
      if (!/\b22\b/.test(txt) || !/\b80\b/.test(txt)) throw new Error(`the group's inbound rules lack 22 or 80: ${txt}`);
      await shot('security-groups.png');
      await page.selectOption('[data-testid="rule-protocol"]', 'tcp');
      await page.fill('[data-testid="rule-ports"]', '8000-8080');
      await page.fill('[data-testid="rule-source"]', '10.0.0.0/8');
      await page.click('[data-testid="rule-add"]');
      const added = page.locator('[data-testid="rule-row"]', { hasText: '10.0.0.0/8' });
      await added.waitFor({ timeout: 30_000 });
      await added.locator('button', { hasText: 'Remove' }).click();
      await added.waitFor({ state: 'detached', timeout: 30_000 });
      await noInlineError('rule-error');
      log('  inbound rule 8000-8080 from 10.0.0.0/8 added and removed');

      const { publicKey } = generateKeyPairSync('ed25519');
      const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
      const str = (b) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
      const openssh = `ssh-ed25519 ${Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64')} e2e`;
      await gotoPage('keypairs', '[data-testid="keypairs-table"]');
      await page.click('[data-testid="keypair-import-open"]');
      await page.fill('[data-testid="import-name"]', names.importedKey);
      await page.fill('[data-testid="import-material"]', openssh);
      await page.click('[data-testid="import-submit"]');
      const krow = page.locator(`[data-testid="keypair-row"][data-key-name="${names.importedKey}"]`);
      await until('the imported key', 30_000, async () => {
        await noInlineError('error');
        return krow.count();
      });
      await krow.locator('td[data-col="name"]').click();
      await page.click('[data-testid="keypair-delete"]');
      await page.click('[data-testid="confirm-ok"]');
      await krow.waitFor({ state: 'detached', timeout: 30_000 });
      log(`  key ${names.importedKey} imported and deleted`);

      await gotoPage('vpcs', '[data-testid="vpcs-table"]');
      await page.click('[data-testid="vpc-create-open"]');
      await page.fill('[data-testid="vpc-cidr"]', '10.77.0.0/16');
      await page.click('[data-testid="vpc-create-submit"]');
      const flash = page.locator('.flash-slot .notice');
      await until('the new VPC', 30_000, async () => {
        await noInlineError('error');
        return (await flash.count()) && /vpc-[0-9a-f]+/.test(await flash.innerText());
      });
      created.vpc = /vpc-[0-9a-f]+/.exec(await flash.innerText())[0];
      await page.locator('[data-testid="vpcs-table"] tr', { hasText: created.vpc }).waitFor({ timeout: 30_000 });
      log(`  created ${created.vpc}`);
      for (const [nav, table, file] of [
        ['volumes', 'volumes-table', 'volumes-after.png'],
        ['snapshots', 'snapshots-table', 'snapshots-after.png'],
        ['addresses', 'eip-table', 'elastic-ips-after.png'],
        ['vpcs', 'vpcs-table', 'vpcs.png'],
        ['dashboard', 'instance-counts', 'dashboard-after.png'],
      ]) {
        await gotoPage(nav, `[data-testid="${table}"]`);
        await until(`${nav} to load`, 30_000, async () => (await page.locator('.spinner').count()) === 0);
        await noInlineError('error');
        await shot(file);
      }
      // Another region: the dashboard reloads there, then back.
      await page.selectOption('[data-testid="region-select"]', 'eu-west-1');
      await until('the dashboard in eu-west-1', 30_000, async () => (await page.locator('[data-testid="count-running"] .card-value').innerText()) !== '…');
      await noInlineError('error');
      const stored = JSON.parse((await page.evaluate(() => sessionStorage.getItem('kiln.session'))) ?? '{}');
      if (stored.region !== 'eu-west-1') throw new Error(`the stored region is ${stored.region}`);
      await shot('dashboard-eu-west-1.png');
      await page.selectOption('[data-testid="region-select"]', 'us-east-1');
      await until('the dashboard in us-east-1', 30_000, async () => (await page.locator('[data-testid="count-running"] .card-value').innerText()) !== '…');
      await page.setViewportSize({ width: 390, height: 844 });
      // On a phone the nav is behind the menu button.
      await page.click('.nav-toggle');
      await gotoPage('instances', '[data-testid="instances-table"]');
      await shot('instances-phone.png');
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await step('7. sign out; the old credentials stop working', async () => {
      const raw = await page.evaluate(() => sessionStorage.getItem('kiln.session'));
      if (!raw) throw new Error('no kiln.session in sessionStorage');
      const s = JSON.parse(raw);
      for (const f of ['accessKeyId', 'secretAccessKey', 'sessionToken', 'expiration', 'accountId', 'accountName', 'region']) {
        if (!s[f]) throw new Error(`kiln.session lacks ${f}`);
      }
      await page.click('[data-testid="signout"]');
      await page.waitForSelector('[data-testid="signin-account"]');
      if (await page.evaluate(() => sessionStorage.getItem('kiln.session'))) throw new Error('kiln.session is still stored after sign-out');
      const ec2 = new EC2Client({
        region: 'us-east-1',
        endpoint: ENDPOINT,
        credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, sessionToken: s.sessionToken },
        maxAttempts: 1,
      });
      try {
        await ec2.send(new DescribeInstancesCommand({}));
        throw new Error('DescribeInstances still works with the signed-out credentials');
      } catch (e) {
        const code = e.Code ?? e.name;
        if (code !== 'ExpiredToken' && code !== 'AuthFailure') throw new Error(`expected ExpiredToken or AuthFailure, got ${code}: ${e.message}`);
        log(`  DescribeInstances with the old credentials: ${code} (${e.$metadata?.httpStatusCode})`);
      } finally {
        ec2.destroy();
      }
    });

    await step('8. a session ended elsewhere sends the console back to sign-in', async () => {
      await page.fill('[data-testid="signin-account"]', ACCOUNT);
      await page.fill('[data-testid="signin-password"]', PASSWORD);
      await page.click('[data-testid="signin-submit"]');
      await page.waitForSelector('[data-testid="nav-instances"]');
      await gotoPage('instances', '[data-testid="instances-table"]');
      const status = await page.evaluate(async () => {
        const s = JSON.parse(sessionStorage.getItem('kiln.session') ?? '{}');
        const r = await fetch('/console/api/signout', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ accessKeyId: s.accessKeyId, sessionToken: s.sessionToken }),
        });
        return r.status;
      });
      if (status !== 204) throw new Error(`POST /console/api/signout answered ${status}, not 204`);
      const msg = page.locator('[data-testid="signin-message"]');
      await msg.waitFor({ timeout: 30_000 });
      const text = await msg.innerText();
      if (!/ExpiredToken|AuthFailure/.test(text)) throw new Error(`the sign-in page says: ${text}`);
      if (await page.evaluate(() => sessionStorage.getItem('kiln.session'))) throw new Error('kiln.session is still stored');
      log(`  sign-in page: ${text.trim()}`);
      await shot('session-ended.png');
    });

    const outside = browserErrors.filter((e) => e.startsWith('outside request'));
    if (outside.length) throw new StepFailure(`the console fetched from outside Kiln: ${[...new Set(outside)].join(', ')}`);
    ok = true;
  } catch (e) {
    console.error(`[${elapsed()}s] FAIL: ${e instanceof StepFailure ? e.message : `${currentStep}: ${e?.stack ?? e}`}`);
    try {
      await shot('failure.png');
    } catch {
      // The page may be gone.
    }
  } finally {
    if (browserErrors.length) {
      console.log(`browser messages (${browserErrors.length}):`);
      for (const m of [...new Set(browserErrors)].slice(0, 30)) console.log(`  ${m}`);
    }
    await browser.close().catch(() => {});
    await cleanup().catch((e) => log(`cleanup failed: ${e.message}`));
  }
  clearTimeout(overall);
  if (!ok) process.exit(1);
  log('PASS');
}

main().catch((e) => {
  console.error(`[${elapsed()}s] FAIL: ${e?.stack ?? e}`);
  process.exit(1);
});
