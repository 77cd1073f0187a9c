// dashboard.mjs: drives the gateway's dashboard in Debian's headless chromium through
// playwright-core, as a person would. Started by dashboard_test.c's browser case, which
// runs the fleet (API keys on, a sleep worker) and passes:
//
//   FLEET_URL        the gateway, http://127.0.0.1:<port>
//   FLEET_KEY        a tenant's API key (fleetctl tenant add)
//   FLEET_ADMIN_KEY  an admin's API key (fleetctl tenant add --admin)
//   FLEET_JOB        a running sleep job of that tenant that reports progress every second
//   FLEET_XSS_JOB    a job of that tenant whose metadata holds markup, with a webhook
//   FLEET_DEAD_JOB   a job of that tenant that will be dead-lettered
//   FLEET_SYNC       a directory: this script writes "restart" there and waits for
//                    "restarted", which the C side writes once it restarted the gateway
//   FLEET_SCREENSHOT where to write a screenshot (optional)
//   FLEET_FORM_JOB   a file: the id of the job this script submits through the form
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Exits 0 when every step passed; otherwise prints the step that failed and exits 1.
import {existsSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const env = (n) => {
  const v = process.env[n];
  if (!v) throw new Error(`${n} is not set`);
  return v;
};
const url = env('FLEET_URL');
const key = env('FLEET_KEY');
const jobId = env('FLEET_JOB');
const xssJob = env('FLEET_XSS_JOB');
const deadJob = env('FLEET_DEAD_JOB');
const sync = env('FLEET_SYNC');
const T = 30000; // the deadline of each step that waits for the page

let step = 'start';
const log = (s) => { step = s; console.log(`dashboard: ${s}`); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // No background networking: this machine reaches no outside host, and chromium's own
  // connections would only fail.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pageErrors = [];
let pageRef = null;
try {
  const ctx = await browser.newContext({viewport: {width: 1400, height: 1000}});
  const page = await ctx.newPage();
  pageRef = page;
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text()}`); });
  // A dialog (alert) would be a script the page ran from data: fail on it.
  page.on('dialog', (d) => { pageErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss(); });

  log('the page loads and asks for a key (the API answers 401 without one)');
  await page.goto(url + '/', {waitUntil: 'domcontentloaded'});
  const dialog = page.getByRole('dialog', {name: 'API key'});
  await dialog.waitFor({state: 'visible', timeout: T});

  log('a wrong key is refused and the dialog stays');
  await page.getByLabel('Key', {exact: true}).fill('fk_not_a_key');
  await page.getByRole('button', {name: 'Use this key'}).click();
  await page.locator('#key-error').filter({hasText: 'refused'}).waitFor({timeout: T});

  log('the right key is kept in session storage and the tenant is named');
  await page.getByLabel('Key', {exact: true}).fill(key);
  await page.getByRole('button', {name: 'Use this key'}).click();
  await dialog.waitFor({state: 'hidden', timeout: T});
  await page.locator('#who').filter({hasText: 'tenant'}).waitFor({timeout: T});
  if ((await page.evaluate(() => sessionStorage.getItem('fleet.apiKey'))) !== key)
    throw new Error('the key is not in session storage');

  log('the models table lists the sleep model with its worker');
  await page.locator('#models-body tr[data-model="sleep"]').waitFor({timeout: T});

  log('the job list shows the submitted job');
  const row = page.locator(`#jobs-body tr[data-job="${jobId}"]`);
  await row.waitFor({timeout: T});

  log('markup in metadata is shown as text, never run');
  await page.locator('#f-search').fill('pwned');
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await page.locator(`#jobs-body tr[data-job="${xssJob}"]`).waitFor({timeout: T});
  await page.getByRole('button', {name: `open job ${xssJob}`}).click();
  await page.locator('#d-fields').filter({hasText: '<img id=pwned'}).waitFor({timeout: T});
  if (await page.locator('#pwned').count()) throw new Error('the metadata markup became an element');
  await page.locator('#f-search').fill('');
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await row.waitFor({timeout: T});

  log('the job detail follows the event stream: the progress bar moves');
  await page.getByRole('button', {name: `open job ${jobId}`}).click();
  await page.locator('#d-id').filter({hasText: jobId}).waitFor({timeout: T});
  const progress = () => page.locator('#d-progress').evaluate((el) => el.value);
  const moved = async (above) => {
    await page.waitForFunction((v) => document.getElementById('d-progress').value > v, above,
      {timeout: T});
    return progress();
  };
  const p1 = await moved(0);
  const p2 = await moved(p1);
  console.log(`dashboard: progress ${p1} -> ${p2}`);
  await page.locator('#d-events li').filter({hasText: 'progress'}).first().waitFor({timeout: T});

  log('the gateway restarts: the stream reconnects by itself and the progress moves on');
  writeFileSync(join(sync, 'restart'), '');
  await page.locator('#d-live').filter({hasText: 'reconnecting'}).waitFor({timeout: T});
  const deadline = Date.now() + T;
  while (!existsSync(join(sync, 'restarted'))) {
    if (Date.now() > deadline) throw new Error('the gateway was not restarted');
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.locator('#d-live').filter({hasText: 'live'}).waitFor({timeout: T});
  const p3 = await moved(await progress());
  console.log(`dashboard: after the restart, progress ${p3}`);
  await page.locator('#conn').filter({hasText: 'connected'}).waitFor({timeout: T});

  if (process.env.FLEET_SCREENSHOT) {
    await moved(p3);
    await page.screenshot({path: process.env.FLEET_SCREENSHOT, fullPage: true});
  }

  log('cancel works: the stream ends with the job cancelled');
  await page.getByRole('button', {name: 'Cancel', exact: true}).click();
  await page.locator('#d-fields dd').filter({hasText: /^cancelled/}).waitFor({timeout: T});
  await row.locator('td.status').filter({hasText: 'cancelled'}).waitFor({timeout: T});
  await page.locator('#d-live').filter({hasText: 'finished'}).waitFor({timeout: T});
  if (!(await page.getByRole('button', {name: 'Cancel', exact: true}).isDisabled()))
    throw new Error('Cancel is still enabled for a cancelled job');

  log('the status filter lists only the chosen statuses (two at once: status=a,b)');
  const jobsTable = page.locator('#jobs');
  await jobsTable.getByLabel('cancelled', {exact: true}).check();
  await jobsTable.getByLabel('failed', {exact: true}).check();
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await row.waitFor({timeout: T});
  await page.waitForFunction(() => {
    const cells = Array.from(document.querySelectorAll('#jobs-body td.status'));
    return cells.length > 0 && cells.every((td) => /^(cancelled|failed)/.test(td.textContent));
  }, null, {timeout: T});
  await jobsTable.getByLabel('cancelled', {exact: true}).uncheck();
  await jobsTable.getByLabel('failed', {exact: true}).uncheck();
  await page.getByRole('button', {name: 'Show', exact: true}).click();

  log('a job submitted through the form runs, and its result shows');
  const form = page.locator('#submit-form');
  await form.getByLabel('Model', {exact: true}).selectOption('sleep');
  await form.getByLabel('Input (JSON)').fill('{"ms": 0}');
  await form.getByLabel('Metadata (JSON object, optional)').fill('{"from": "the form"}');
  await form.getByRole('button', {name: 'Submit', exact: true}).click();
  await page.locator('#s-answer').filter({hasText: 'Accepted'}).waitFor({timeout: T});
  const formJob = /Accepted: ([0-9A-Z]{26})/.exec(await page.locator('#s-answer').textContent())[1];
  await page.locator('#d-id').filter({hasText: formJob}).waitFor({timeout: T});
  await page.locator('#d-fields dd').filter({hasText: /^succeeded/}).waitFor({timeout: T});
  await page.getByRole('button', {name: 'Show result'}).click();
  await page.getByLabel('result').filter({hasText: '"slept_ms": 0'}).waitFor({timeout: T});
  writeFileSync(env('FLEET_FORM_JOB'), formJob);

  log('a job with files goes as multipart/form-data; the echo model returns them');
  await form.getByLabel('Model', {exact: true}).selectOption('echo');
  await form.getByLabel('Input (JSON)').fill('{"lang": "fr"}');
  await form.getByLabel('Metadata (JSON object, optional)').fill('');
  await form.getByLabel(/^Files/).setInputFiles({name: 'hello.txt', mimeType: 'text/plain',
    buffer: Buffer.from('hello fleet')});
  await form.getByRole('button', {name: 'Submit', exact: true}).click();
  await page.locator('#s-answer').filter({hasText: 'Accepted'}).waitFor({timeout: T});
  const filesJob = /Accepted: ([0-9A-Z]{26})/.exec(await page.locator('#s-answer').textContent())[1];
  await page.locator('#d-id').filter({hasText: filesJob}).waitFor({timeout: T});
  await page.locator('#d-fields dd').filter({hasText: /^succeeded/}).waitFor({timeout: T});
  await page.getByRole('button', {name: 'Show result'}).click();
  await page.getByLabel('result').filter({hasText: '"name": "hello.txt"'}).waitFor({timeout: T});
  await page.getByLabel('result').filter({hasText: '"lang": "fr"'}).waitFor({timeout: T});
  await form.getByLabel(/^Files/).setInputFiles([]);

  log('delete removes the finished job and its result');
  await page.locator('#f-search').fill(formJob);
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await page.locator('#d-id').filter({hasText: formJob}).waitFor({timeout: T});
  await page.locator('#d-fields dd').filter({hasText: /^succeeded/}).waitFor({timeout: T});
  await page.locator('#f-search').fill('');
  await page.getByRole('button', {name: 'Delete', exact: true}).click();
  await page.locator('#d-action').filter({hasText: /^Delete: 200/}).waitFor({timeout: T});
  await page.locator(`#jobs-body tr[data-job="${formJob}"]`).waitFor({state: 'detached', timeout: T});

  log('retry runs the cancelled job again: its progress moves, and it is cancelled again');
  await page.locator('#f-search').fill(jobId);
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await page.locator('#d-id').filter({hasText: jobId}).waitFor({timeout: T});
  await page.locator('#d-fields dd').filter({hasText: /^cancelled/}).waitFor({timeout: T});
  await page.getByRole('button', {name: 'Retry', exact: true}).click();
  await page.locator('#d-action').filter({hasText: /^Retry: 2/}).waitFor({timeout: T});
  await page.locator('#d-fields dd').filter({hasText: /^running/}).waitFor({timeout: T});
  await moved(await progress());
  await page.getByRole('button', {name: 'Cancel', exact: true}).click();
  await page.locator('#d-fields dd').filter({hasText: /^cancelled/}).waitFor({timeout: T});

  log('the dead-letter list shows the dead-lettered job, and its Retry queues it again');
  const deadRow = page.locator(`#dlq-body tr[data-job="${deadJob}"]`);
  const until = Date.now() + T;
  for (;;) {
    await page.getByRole('button', {name: 'Refresh', exact: true}).click();
    if (await deadRow.waitFor({timeout: 1000}).then(() => true, () => false)) break;
    if (Date.now() > until) throw new Error('the dead letter was not listed');
  }
  await page.getByRole('button', {name: `retry job ${deadJob}`}).click();
  await page.locator('#d-id').filter({hasText: deadJob}).waitFor({timeout: T});
  await page.locator('#d-action').filter({hasText: /^Retry: 2/}).waitFor({timeout: T});

  log("a job's webhook delivery state shows");
  await page.locator('#f-search').fill(xssJob);
  await page.getByRole('button', {name: 'Show', exact: true}).click();
  await page.locator('#d-id').filter({hasText: xssJob}).waitFor({timeout: T});
  await page.locator('#d-webhook').filter({hasText: 'delivery: delivered'}).waitFor({timeout: T});

  log("a tenant's page has the rates too, from the gateway's /metrics");
  const ratesShown = () => {
    const tr = document.querySelector('#models-body tr[data-model="sleep"]');
    return tr && /^[0-9]/.test(tr.children[5].textContent) && /^[0-9]/.test(tr.children[6].textContent);
  };
  await page.waitForFunction(ratesShown, null, {timeout: T});

  log('a reload revalidates the files (304) and keeps the key');
  const revalidated = [];
  page.on('response', (r) => { if (r.status() === 304) revalidated.push(new URL(r.url()).pathname); });
  await page.reload({waitUntil: 'domcontentloaded'});
  await page.locator('#who').filter({hasText: 'tenant'}).waitFor({timeout: T});
  await row.waitFor({timeout: T});
  if (await page.getByRole('dialog', {name: 'API key'}).isVisible()) throw new Error('the key was asked again');
  // (chromium reports a revalidated page itself as the 200 it keeps; its files as 304)
  for (const p of ['/ui/app.js', '/ui/app.css'])
    if (!revalidated.includes(p)) throw new Error(`${p} was not revalidated (304s: ${revalidated.join(', ')})`);

  log('an admin key gets the fleet-wide rates (from two refreshes of /v1/stats)');
  const admin = await (await browser.newContext()).newPage();
  admin.on('pageerror', (e) => pageErrors.push(String(e)));
  await admin.goto(url + '/', {waitUntil: 'domcontentloaded'});
  await admin.getByLabel('Key', {exact: true}).fill(env('FLEET_ADMIN_KEY'));
  await admin.getByRole('button', {name: 'Use this key'}).click();
  await admin.locator('#who').filter({hasText: 'admin key'}).waitFor({timeout: T});
  await admin.waitForFunction(ratesShown, null, {timeout: T});

  log("an admin key lists every tenant's jobs, with a tenant column and a tenant filter");
  if (await page.locator('#jobs thead th', {hasText: 'tenant'}).isVisible())
    throw new Error("a tenant's page shows the tenant column");
  const adminRow = admin.locator(`#jobs-body tr[data-job="${jobId}"]`);
  await adminRow.waitFor({timeout: T});
  await admin.locator('#jobs thead th', {hasText: 'tenant'}).waitFor({timeout: T});
  const cells = await adminRow.locator('td').allTextContents();
  if (cells[1] !== 'acme') throw new Error(`the tenant cell says ${JSON.stringify(cells[1])}, not acme`);
  await admin.getByLabel('Tenant', {exact: true}).fill('ops');
  await admin.getByRole('button', {name: 'Show'}).click();
  await adminRow.waitFor({state: 'detached', timeout: T});
  await admin.getByLabel('Tenant', {exact: true}).fill('acme');
  await admin.getByRole('button', {name: 'Show'}).click();
  await adminRow.waitFor({timeout: T});

  if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join('; ')}`);
  log('passed');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`dashboard: FAILED at "${step}": ${e.message}`);
  // What the page showed then.
  for (const id of ['conn', 'who', 'jobs-problem', 'd-id', 'd-live', 'd-action', 'd-fields', 's-answer',
    'dlq-problem', 'dlq-body']) {
    const text = await pageRef?.locator(`#${id}`).textContent({timeout: 1000}).catch(() => null);
    console.log(`dashboard: #${id}: ${text}`);
  }
  if (pageErrors.length) console.log(`dashboard: errors in the page: ${pageErrors.join('; ')}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
