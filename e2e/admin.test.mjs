// End-to-end tests of the admin page (issue 6): a real server, a real receiver, a real browser.
//
// Run with `e2e/run.sh` (installs what is missing, builds the binary) or, with the binary built,
// `MIA_WEBHOOKS_BIN=target/release/mia-webhooks node --test` in this directory.
//
// The tests run in order and share one server, one receiver and one browser: each builds on the
// state the previous one left, as a person using the page would.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  SCREENSHOTS,
  launchBrowser,
  makeCaPem,
  randomHex,
  signature,
  startReceiver,
  startServer,
} from './harness.mjs';

const STEP = { timeout: 90_000 };

/** Every webhook secret the tests use: none may ever reach a page or an API response. */
const secrets = [];
const leaks = [];
/** Uncaught exceptions and Content-Security-Policy violations seen in any page. */
const pageProblems = [];
const bodyChecks = [];
let responsesChecked = 0;

let server;
let receiver;
let browser;
let page;
let caPem;

const SCOPE_HASH = '#/companies/acme/projects/payments';
const SCOPE_API = '/api/companies/acme/projects/payments/webhooks';
const FIRST_TARGET = 'https://hooks.payments.test/mia';
const PROXY = 'http://127.0.0.1:3128/';
const SECRET = `e2e-secret-${randomHex(16)}`;
const OTHER_SECRET = `e2e-other-${randomHex(16)}`;
secrets.push(SECRET, OTHER_SECRET);

/** Watches every response the page gets from the server for a secret. */
function watch(p) {
  p.on('pageerror', (error) => pageProblems.push(`uncaught: ${error.message}`));
  p.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) pageProblems.push(`CSP: ${message.text()}`);
  });
  p.on('response', (response) => {
    if (!response.url().startsWith(server.base)) return;
    bodyChecks.push(
      response.body().then(
        (body) => {
          const text = `${JSON.stringify(response.headers())}\n${body.toString('utf8')}`;
          for (const secret of secrets) {
            if (text.includes(secret)) leaks.push(`${response.request().method()} ${response.url()}`);
          }
          responsesChecked += 1;
        },
        () => {
          // No body (a 204, a 304, or a redirect): nothing to leak.
        },
      ),
    );
  });
}

async function assertNoSecretInPage(p) {
  const html = await p.content();
  for (const secret of secrets) assert.ok(!html.includes(secret), 'the page HTML contains a secret');
  const values = await p.evaluate(() => [...document.querySelectorAll('input, textarea')].map((e) => e.value));
  for (const secret of secrets) assert.ok(!values.includes(secret), 'an input still holds a secret');
}

async function focusedId(p) {
  return p.evaluate(() => document.activeElement && document.activeElement.id);
}

async function signIn(p, token) {
  await p.locator('#signin-token').fill(token);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.locator('#app-view').waitFor({ state: 'visible' });
}

function row(p, url) {
  return p.locator('tr.webhook-row', { hasText: url });
}

async function shot(p, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SCREENSHOTS, name) });
}

before(async () => {
  caPem = makeCaPem();
  server = await startServer();
  receiver = await startReceiver();
  browser = await launchBrowser();
  page = await browser.context.newPage();
  watch(page);
});

after(async () => {
  if (browser) await browser.close();
  if (receiver) await receiver.close();
  if (server) await server.stop();
});

test('signing in keeps the token in the session only and opens the scope of the URL', STEP, async () => {
  await page.goto(`${server.base}/${SCOPE_HASH}`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  await page.locator('#signin-token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-token-error').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#signin-token-error').textContent(), 'This token is not valid.');
  assert.equal(await page.locator('#signin-token').getAttribute('aria-invalid'), 'true');

  await signIn(page, server.token);
  assert.equal(new URL(page.url()).hash, SCOPE_HASH);
  assert.equal(await page.locator('#scope-kind').inputValue(), 'project');
  assert.equal(await page.locator('#scope-tenant').inputValue(), 'acme');
  assert.equal(await page.locator('#scope-project').inputValue(), 'payments');
  await page.getByRole('heading', { name: 'No webhooks yet' }).waitFor();

  const storage = await page.evaluate(() => ({
    session: sessionStorage.getItem('mia-webhooks.token'),
    local: localStorage.length,
    cookies: document.cookie,
  }));
  assert.equal(storage.session, server.token);
  assert.equal(storage.local, 0);
  assert.equal(storage.cookies, '');
  const html = await page.content();
  assert.ok(!html.includes(server.token), 'the token is not in the page');

  // Every form control has a real label.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
      .map((e) => e.id || e.name),
  );
  assert.deepEqual(unlabelled, []);
});

test('the scope picker changes the URL so that the page can be bookmarked', STEP, async () => {
  await page.locator('#scope-kind').selectOption('company');
  assert.ok(await page.locator('#scope-project').isHidden());
  await page.locator('#scope-tenant').fill('');
  await page.getByRole('button', { name: 'Show webhooks' }).click();
  assert.equal(await page.locator('#scope-tenant-error').textContent(), 'Enter a company ID.');
  await page.locator('#scope-tenant').fill('acme');
  await page.getByRole('button', { name: 'Show webhooks' }).click();
  await page.waitForURL((url) => url.hash === '#/companies/acme');
  await page.locator('#scope-summary', { hasText: 'Installed on company acme' }).waitFor();

  await page.locator('#scope-kind').selectOption('project');
  await page.locator('#scope-project').fill('payments');
  await page.getByRole('button', { name: 'Show webhooks' }).click();
  await page.waitForURL((url) => url.hash === SCOPE_HASH);
  await page.locator('#scope-summary', { hasText: 'Installed on project payments of company acme' }).waitFor();
});

test('an invalid target URL shows the API error next to the Target URL field', STEP, async () => {
  // Keyboard: the modal opens from the keyboard, takes the focus, and gives it back on Escape.
  await page.locator('#add-webhook').focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Add webhook' });
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute('aria-modal'), 'true');
  assert.equal(await focusedId(page), 'wh-target-url');
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'wh-secret');

  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await focusedId(page), 'add-webhook');

  await page.locator('#add-webhook').click();
  await dialog.waitFor();
  // Next checks that the required fields are filled.
  await dialog.getByRole('button', { name: 'Next' }).click();
  assert.equal(await page.locator('#wh-target-url-error').textContent(), 'Enter the target URL.');
  assert.equal(await page.locator('#wh-secret-error').textContent(), 'Enter a secret.');
  assert.equal(await page.locator('#wh-events-error').textContent(), 'Choose at least one event.');

  await page.getByLabel('Target URL').fill('not-a-url');
  await page.getByLabel(/^Secret/).fill(SECRET);
  await dialog.getByRole('checkbox', { name: 'project_created' }).check();
  await dialog.getByRole('button', { name: 'Next' }).click();
  await page.locator('#step-2').waitFor({ state: 'visible' });
  await dialog.getByRole('button', { name: 'Add webhook' }).click();

  // The server refuses the URL; the page goes back to step 1 and shows why, next to the field.
  await page.locator('#wh-target-url-error').waitFor({ state: 'visible' });
  assert.ok(await page.locator('#step-1').isVisible(), 'step 1 is shown again');
  const message = await page.locator('#wh-target-url-error').textContent();
  assert.match(message, /targetUrl/);
  assert.equal(await page.getByLabel('Target URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await focusedId(page), 'wh-target-url');
  assert.ok(await page.locator('#webhook-form-error').isHidden(), 'the error is next to the field, not at the top');

  // A bad CA certificate: the error shows on step 2, in its section, opened.
  await page.getByLabel('Target URL').fill(FIRST_TARGET);
  await dialog.getByRole('button', { name: 'Next' }).click();
  await dialog.locator('summary', { hasText: 'Certificate authority' }).click();
  await page.getByLabel('CA certificate').fill('not a certificate');
  await dialog.locator('summary', { hasText: 'Certificate authority' }).click();
  assert.ok(await page.getByLabel('CA certificate').isHidden(), 'the section is closed again');
  await dialog.getByRole('button', { name: 'Add webhook' }).click();
  await page.locator('#wh-ca-error').waitFor({ state: 'visible' });
  assert.match(await page.locator('#wh-ca-error').textContent(), /caCertificate/);
  assert.ok(await page.locator('#wh-ca-section').evaluate((d) => d.open), 'the section is opened');
  assert.equal(await focusedId(page), 'wh-ca');
  assert.ok(await page.locator('#wh-target-url-error').isHidden(), 'the fixed field has no error left');

  await dialog.getByRole('button', { name: 'Back' }).click();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#wh-secret').inputValue(), '', 'closing the modal clears the secret');
  const list = await server.api('GET', SCOPE_API);
  assert.equal(list.body.items.length, 0);
  await assertNoSecretInPage(page);
});

test('a webhook is added through both steps with a CA certificate and a proxy', STEP, async () => {
  await page.locator('#add-webhook').click();
  const dialog = page.getByRole('dialog', { name: 'Add webhook' });
  await dialog.waitFor();
  assert.equal(await page.locator('#step-tab-1').getAttribute('aria-current'), 'step');
  assert.match(await page.locator('#wh-secret-help').textContent(), /never be shown again/);
  assert.equal(await page.locator('#wh-secret').getAttribute('type'), 'password');

  await page.getByLabel('Target URL').fill(FIRST_TARGET);
  await page.getByLabel(/^Secret/).fill(SECRET);
  await dialog.getByRole('checkbox', { name: 'project_created' }).check();
  await dialog.getByRole('checkbox', { name: 'service_created' }).check();
  assert.equal(await page.locator('#wh-events-count').textContent(), '(2 selected)');
  await page.locator('#wh-events').evaluate((list) => list.scrollTo(0, 0));
  await shot(page, 'add-step1.png');

  await dialog.getByRole('button', { name: 'Next' }).click();
  await page.locator('#step-2').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#step-tab-2').getAttribute('aria-current'), 'step');
  // Both sections start closed; opening them shows their fields.
  assert.ok(await page.getByLabel('CA certificate').isHidden());
  await dialog.locator('summary', { hasText: 'Certificate authority' }).click();
  await page.getByLabel('CA certificate').fill(caPem);
  await dialog.locator('summary', { hasText: 'Proxy' }).click();
  await page.getByLabel('Proxy URL').fill(PROXY);
  await page.getByLabel('CA certificate').evaluate((area) => area.scrollTo(0, 0));
  await shot(page, 'add-step2.png');

  const create = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(SCOPE_API));
  await dialog.getByRole('button', { name: 'Add webhook' }).click();
  const sent = (await create).postDataJSON();
  assert.deepEqual(Object.keys(sent).sort(), ['caCertificate', 'events', 'proxy', 'secret', 'targetUrl']);
  assert.deepEqual(sent.proxy, { url: PROXY });
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await focusedId(page), 'add-webhook', 'the focus returns to the opener');
  assert.equal(await page.locator('#wh-secret').inputValue(), '');

  const added = row(page, FIRST_TARGET);
  await added.waitFor();
  assert.match(await added.textContent(), /project_created/);
  assert.match(await added.textContent(), /service_created/);
  assert.match(await added.textContent(), /Enabled/);
  await added.getByText('Custom CA').waitFor();
  await added.getByText('Proxy').waitFor();

  const list = await server.api('GET', SCOPE_API);
  assert.equal(list.body.items.length, 1);
  const stored = list.body.items[0];
  assert.equal(stored.targetUrl, FIRST_TARGET);
  assert.ok(stored.caCertificate.includes('BEGIN CERTIFICATE'));
  assert.equal(stored.proxy.url, PROXY);
  await assertNoSecretInPage(page);
});

test('the event filter narrows the table and is part of the bookmarkable URL', STEP, async () => {
  const other = await server.api('POST', SCOPE_API, {
    targetUrl: 'https://releases.payments.test/hook',
    secret: OTHER_SECRET,
    events: ['tag_created'],
  });
  assert.equal(other.status, 201);
  await page.reload();
  await row(page, 'https://releases.payments.test/hook').waitFor();
  assert.equal(await page.locator('tr.webhook-row').count(), 2);

  await page.locator('#filter-summary').click();
  const panel = page.locator('.filter-panel');
  await panel.waitFor();
  await panel.getByRole('checkbox', { name: 'tag_created' }).check();
  const listed = page.waitForRequest((r) => r.url().includes(`${SCOPE_API}?`) && r.url().includes('events=tag_created'));
  await panel.getByRole('button', { name: 'Apply filter' }).click();
  await listed;
  await page.waitForURL((url) => url.hash === `${SCOPE_HASH}?events=tag_created`);
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 1);
  assert.ok(await row(page, 'https://releases.payments.test/hook').isVisible());
  assert.equal(await page.locator('#filter-count').textContent(), '1');

  // Two events: webhooks subscribed to any of them.
  await page.locator('#filter-summary').click();
  await panel.getByRole('checkbox', { name: 'project_created' }).check();
  await panel.getByRole('button', { name: 'Apply filter' }).click();
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 2);

  // An event nobody subscribes to: the empty state says so and offers to clear the filter.
  await page.locator('#filter-summary').click();
  await panel.getByRole('button', { name: 'Clear' }).click();
  await page.waitForURL((url) => url.hash === SCOPE_HASH);
  await page.locator('#filter-summary').click();
  await panel.getByRole('checkbox', { name: 'company_user_added' }).check();
  await panel.getByRole('button', { name: 'Apply filter' }).click();
  await page.getByRole('heading', { name: 'No webhook matches the filter' }).waitFor();
  await page.locator('#empty-add').click();
  await page.waitForURL((url) => url.hash === SCOPE_HASH);
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 2);

  // A bookmark opened in a new tab (a new session) asks for the token, then shows the same view.
  const tab = await browser.context.newPage();
  watch(tab);
  await tab.goto(`${server.base}/${SCOPE_HASH}?events=tag_created`);
  await signIn(tab, server.token);
  await tab.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 1);
  assert.ok(await row(tab, 'https://releases.payments.test/hook').isVisible());
  await tab.getByRole('button', { name: 'Sign out' }).click();
  await tab.locator('#signin-view').waitFor({ state: 'visible' });
  assert.equal(await tab.evaluate(() => sessionStorage.length), 0);
  await tab.close();
});

test('editing without touching the secret keeps it: a test event is signed with the original secret', STEP, async () => {
  await row(page, FIRST_TARGET).getByRole('button', { name: /^Edit/ }).click();
  const dialog = page.getByRole('dialog', { name: 'Edit webhook' });
  await dialog.waitFor();
  assert.equal(await page.getByLabel('Target URL').inputValue(), FIRST_TARGET);
  const secretInput = page.getByLabel(/^Secret/);
  assert.equal(await secretInput.inputValue(), '');
  assert.equal(await secretInput.getAttribute('placeholder'), 'leave empty to keep the current secret');
  assert.ok(await dialog.getByRole('checkbox', { name: 'project_created' }).isChecked());
  assert.ok(await dialog.getByRole('checkbox', { name: 'service_created' }).isChecked());
  assert.ok(!(await dialog.getByRole('checkbox', { name: 'tag_created' }).isChecked()));

  await page.getByLabel('Target URL').fill(receiver.url);
  await dialog.getByRole('button', { name: 'Next' }).click();
  assert.ok(await page.locator('#wh-ca-section').evaluate((d) => d.open), 'a set CA shows open');
  assert.match(await page.getByLabel('CA certificate').inputValue(), /BEGIN CERTIFICATE/);
  assert.equal(await page.getByLabel('Proxy URL').inputValue(), PROXY);
  await page.getByLabel('Proxy URL').fill('');

  const patch = page.waitForRequest((r) => r.method() === 'PATCH');
  await dialog.getByRole('button', { name: 'Save changes' }).click();
  const sent = (await patch).postDataJSON();
  assert.deepEqual(sent, { targetUrl: receiver.url, proxy: null }, 'only the changed fields; no secret');
  await dialog.waitFor({ state: 'hidden' });

  const edited = row(page, receiver.url);
  await edited.waitFor();
  assert.equal(await edited.getByText('Proxy').count(), 0, 'the proxy is gone');
  await edited.getByText('Custom CA').waitFor();
  assert.equal(await row(page, FIRST_TARGET).count(), 0);

  // Deliveries panel: send a test event; the receiver verifies it with the original secret.
  await edited.getByRole('button', { name: /^Deliveries/ }).click();
  const deliveries = page.locator('tr.deliveries-row');
  await deliveries.getByText('No deliveries yet.', { exact: false }).waitFor();
  await deliveries.getByRole('button', { name: 'Send test event' }).click();
  const [request] = await receiver.waitFor(1);
  assert.equal(request.method, 'POST');
  assert.equal(request.url, new URL(receiver.url).pathname);
  assert.equal(request.headers['x-mia-event'], 'webhook_tested');
  assert.equal(request.headers['x-mia-signature'], signature(request.body, SECRET), 'signed with the original secret');
  assert.notEqual(request.headers['x-mia-signature'], signature(request.body, OTHER_SECRET));

  await deliveries.locator('.delivery .status-succeeded').waitFor({ timeout: 30_000 });
  const item = deliveries.locator('.delivery').first();
  assert.match(await item.textContent(), /webhook_tested/);
  assert.match(await item.textContent(), /1 attempt/);
  assert.match(await item.textContent(), /HTTP 200/);
  await item.getByRole('button', { name: 'Attempts' }).click();
  const attempts = item.locator('.attempts');
  await attempts.locator('.excerpt').waitFor();
  assert.match(await attempts.textContent(), /#1/);
  assert.match(await attempts.textContent(), new RegExp(request.headers['x-mia-delivery']));
  await shot(page, 'deliveries.png');

  // Redeliver: a new delivery of the same event bytes, signed with the same secret.
  await item.getByRole('button', { name: /^Redeliver/ }).click();
  const requests = await receiver.waitFor(2);
  assert.deepEqual(requests[1].body, request.body, 'the same event bytes');
  assert.equal(requests[1].headers['x-mia-signature'], signature(requests[1].body, SECRET));
  await page.waitForFunction(() => document.querySelectorAll('tr.deliveries-row .delivery .status-succeeded').length === 2, null, {
    timeout: 30_000,
  });
  await assertNoSecretInPage(page);
});

test('deleting asks for confirmation in a modal whose button reads "Delete webhook"', STEP, async () => {
  const target = row(page, receiver.url);
  const id = await target.getAttribute('data-id');
  await target.getByRole('button', { name: /^Delete/ }).click();
  const dialog = page.getByRole('alertdialog', { name: 'Delete webhook?' });
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute('aria-modal'), 'true');
  assert.match(await dialog.textContent(), new RegExp(receiver.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  assert.equal(await focusedId(page), 'delete-cancel', 'the safe choice has the focus');

  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.key), `delete:${id}`, 'the focus returns to Delete');
  assert.equal((await server.api('GET', `/api/webhooks/${id}`)).status, 200, 'Escape deletes nothing');

  await target.getByRole('button', { name: /^Delete/ }).click();
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Delete webhook' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await target.waitFor({ state: 'detached' });
  assert.equal((await server.api('GET', `/api/webhooks/${id}`)).status, 404);
  assert.equal(await page.locator('tr.webhook-row').count(), 1);
});

test('a network error shows a banner whose Retry button loads again', STEP, async () => {
  await page.route('**/api/**', (route) => route.abort('connectionrefused'));
  await page.locator('#scope-tenant').fill('acme');
  await page.locator('#scope-project').fill('payments');
  await page.getByRole('button', { name: 'Show webhooks' }).click();
  const banner = page.getByRole('alert').filter({ hasText: 'cannot be reached' });
  await banner.waitFor();
  await page.unroute('**/api/**');
  await banner.getByRole('button', { name: 'Retry' }).click();
  await banner.waitFor({ state: 'hidden' });
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 1);
});

test('a long list comes in pages with a "Load more" button', STEP, async () => {
  for (let i = 0; i < 27; i++) {
    const created = await server.api('POST', '/api/companies/bulk/webhooks', {
      targetUrl: `https://hook-${String(i).padStart(2, '0')}.bulk.test/`,
      secret: OTHER_SECRET,
      events: ['project_created'],
    });
    assert.equal(created.status, 201);
  }
  await page.goto(`${server.base}/#/companies/bulk`);
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 25);
  const more = page.getByRole('button', { name: 'Load more webhooks' });
  await more.click();
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 27);
  await more.waitFor({ state: 'hidden' });
  const urls = await page.locator('tr.webhook-row .url').allTextContents();
  assert.equal(new Set(urls).size, 27, 'no webhook twice');
});

test('the page reads well at 1280 and 390 px wide', STEP, async () => {
  const seeds = [
    { targetUrl: 'https://hooks.acme.test/console/projects', events: ['project_created', 'service_created'] },
    { targetUrl: 'https://ci.acme.test/mia/releases', events: ['tag_created'], description: 'Release pipeline', caCertificate: caPem },
    {
      targetUrl: 'https://audit.acme.test/ingest',
      events: ['company_user_added', 'company_user_edited', 'company_user_removed', 'project_user_added', 'project_user_removed'],
      proxy: { url: PROXY },
    },
    { targetUrl: 'https://legacy.acme.test/hook', events: ['project_created'], enabled: false },
  ];
  for (const seed of seeds) {
    const created = await server.api('POST', '/api/companies/acme/webhooks', { secret: OTHER_SECRET, ...seed });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }

  // A hash change is not a navigation: reload so that nothing of the previous steps shows.
  await page.goto(`${server.base}/#/companies/acme`);
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 4);
  await row(page, 'https://legacy.acme.test/hook').getByText('Disabled', { exact: true }).waitFor();
  await shot(page, 'table.png');
  const wide = await page.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    addRight: document.getElementById('add-webhook').getBoundingClientRect().right,
    tableRight: document.getElementById('webhooks-table').getBoundingClientRect().right,
  }));
  assert.equal(wide.overflow, 0, 'no horizontal scrolling at 1280 px');
  assert.ok(Math.abs(wide.addRight - wide.tableRight) < 2, '"Add webhook" sits at the top right');

  const phone = await browser.context.newPage();
  watch(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${server.base}/#/companies/acme`);
  await signIn(phone, server.token);
  await phone.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 4);
  await shot(phone, 'table-390.png');
  const narrow = await phone.evaluate(() => {
    const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
    const buttons = [...document.querySelectorAll('tr.webhook-row button')].map((b) => b.getBoundingClientRect());
    return { overflow, outside: buttons.filter((r) => r.left < 0 || r.right > 390).length };
  });
  assert.equal(narrow.overflow, 0, 'no horizontal scrolling at 390 px');
  assert.equal(narrow.outside, 0, 'every row button is on screen');

  await phone.locator('#add-webhook').click();
  const dialog = phone.getByRole('dialog', { name: 'Add webhook' });
  await dialog.waitFor();
  const box = await dialog.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, 'the modal fits the screen');
  await shot(phone, 'add-step1-390.png');
  await phone.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  await phone.close();
});

test('no page and no API response ever contained a secret, the log neither, and the page broke no rule', STEP, async () => {
  await Promise.all(bodyChecks);
  assert.ok(responsesChecked > 30, `only ${responsesChecked} responses were checked`);
  assert.deepEqual(leaks, []);
  assert.deepEqual(pageProblems, [], 'no script error and no CSP violation');
  await assertNoSecretInPage(page);
  const log = server.output();
  for (const secret of secrets) assert.ok(!log.includes(secret), 'the server log contains a secret');
});
