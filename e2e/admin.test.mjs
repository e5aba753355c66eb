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
  startProxy,
  startReceiver,
  startServer,
} from './harness.mjs';

const STEP = { timeout: 90_000 };

/**
 * Every webhook secret (and proxy credential) the tests use: none may ever reach a page, a
 * response to the browser or a response to the tests' own API calls.
 */
const secrets = [];
const leaks = [];
/** Uncaught exceptions and Content-Security-Policy violations seen in any page. */
const pageProblems = [];
const bodyChecks = [];
/** Responses to the browser whose body could not be read: each is a failure, not a pass. */
const unreadable = [];
let responsesChecked = 0;
let apiResponsesChecked = 0;

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
/** Longer than the server's 1024-byte limit: only the server knows that limit. */
const LONG_SECRET = `e2e-long-${randomHex(520)}`;
const COMPANY_SECRET = `e2e-company-${randomHex(16)}`;
const PROXY_USER = `e2e-user-${randomHex(6)}`;
const PROXY_PASSWORD = `e2e-password-${randomHex(12)}`;
secrets.push(SECRET, OTHER_SECRET, LONG_SECRET, COMPANY_SECRET, PROXY_USER, PROXY_PASSWORD);

const EMITTER_MESSAGE = /emitter token: it may post events, but it cannot manage webhooks/;

function scanForSecrets(what, text) {
  for (const secret of secrets) {
    if (text.includes(secret)) leaks.push(what);
  }
}

/** Watches every response the page gets from the server for a secret. */
function watch(p) {
  p.inflight = 0;
  p.on('request', (request) => {
    if (request.url().startsWith(server.base)) p.inflight += 1;
  });
  for (const done of ['requestfinished', 'requestfailed']) {
    p.on(done, (request) => {
      if (request.url().startsWith(server.base)) p.inflight -= 1;
    });
  }
  p.on('pageerror', (error) => pageProblems.push(`uncaught: ${error.message}`));
  p.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) pageProblems.push(`CSP: ${message.text()}`);
  });
  p.on('response', (response) => {
    if (!response.url().startsWith(server.base)) return;
    const what = `${response.request().method()} ${response.url()} (${response.status()})`;
    const status = response.status();
    // 1xx, 204, 304 and redirects carry no body by definition: their headers are still checked.
    if (status < 200 || status === 204 || status === 304 || (status >= 300 && status < 400)) {
      scanForSecrets(what, JSON.stringify(response.headers()));
      responsesChecked += 1;
      return;
    }
    bodyChecks.push(
      response.body().then(
        (body) => {
          scanForSecrets(what, `${JSON.stringify(response.headers())}\n${body.toString('utf8')}`);
          responsesChecked += 1;
        },
        (error) => {
          unreadable.push(`${what}: ${error.message.split('\n')[0]}`);
        },
      ),
    );
  });
}

/**
 * Waits until the page has no request to the server in flight and every body it received is
 * read: a reload or a close would otherwise drop bodies before they are checked.
 */
async function settle(p) {
  const deadline = Date.now() + 30_000;
  while (p.inflight > 0) {
    if (Date.now() > deadline) throw new Error(`${p.inflight} requests still in flight`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await Promise.all(bodyChecks);
}

/** Reloads a page once its responses are checked. */
async function reload(p) {
  await settle(p);
  await p.reload();
}

/** Closes a page once its responses are checked. */
async function closePage(p) {
  await settle(p);
  await p.close();
}

/** The focused element, named: its id, else its aria-label, else its text. */
async function focusedName(p) {
  return p.evaluate(() => {
    const e = document.activeElement;
    if (!e || e === document.body) return null;
    return e.id || e.getAttribute('aria-label') || e.textContent.trim();
  });
}

/** Presses Tab (or Shift+Tab) once per expected name and checks where the focus lands. */
async function tabThrough(p, names, key = 'Tab') {
  const landed = [];
  for (let i = 0; i < names.length; i++) {
    await p.keyboard.press(key);
    landed.push(await focusedName(p));
  }
  assert.deepEqual(landed, names);
}

/** Polls the API until `check(body)` holds (bounded: fails after `ms`). */
async function until(route, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const answer = await server.api('GET', route);
    if (check(answer.body)) return answer.body;
    if (Date.now() > deadline) throw new Error(`GET ${route} never matched: ${JSON.stringify(answer.body).slice(0, 300)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
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
  server = await startServer({
    inspect: (what, text) => {
      scanForSecrets(`test's own ${what}`, text);
      apiResponsesChecked += 1;
    },
  });
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
  assert.equal(await page.locator('#whoami').textContent(), 'Instance admin');

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

test('the target URL is checked at Next; what only the server knows shows next to its field', STEP, async () => {
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

  const posts = [];
  const onRequest = (r) => {
    if (r.method() === 'POST' && r.url().endsWith(SCOPE_API)) posts.push(r.url());
  };
  page.on('request', onRequest);

  await page.locator('#add-webhook').click();
  await dialog.waitFor();
  // Next checks that the required fields are filled.
  await dialog.getByRole('button', { name: 'Next' }).click();
  assert.equal(await page.locator('#wh-target-url-error').textContent(), 'Enter the target URL.');
  assert.equal(await page.locator('#wh-secret-error').textContent(), 'Enter a secret.');
  assert.equal(await page.locator('#wh-events-error').textContent(), 'Choose at least one event.');

  // ... and that the target URL is an absolute http or https URL, before step 2.
  await page.getByLabel('Target URL').fill('not-a-url');
  await page.getByLabel(/^Secret/).fill(SECRET);
  await dialog.getByRole('checkbox', { name: 'project_created' }).check();
  await dialog.getByRole('button', { name: 'Next' }).click();
  assert.ok(await page.locator('#step-1').isVisible(), 'step 1 stays');
  assert.equal(
    await page.locator('#wh-target-url-error').textContent(),
    'Enter a full URL that starts with https:// or http://, such as https://example.com/webhooks.',
  );
  assert.equal(await page.getByLabel('Target URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await focusedId(page), 'wh-target-url');
  assert.ok(await page.locator('#wh-secret-error').isHidden(), 'the filled fields have no error');
  await page.getByLabel('Target URL').fill('ftp://hooks.payments.test/mia');
  assert.ok(await page.locator('#wh-target-url-error').isHidden(), 'typing clears the error');
  await dialog.getByRole('button', { name: 'Next' }).click();
  assert.equal(
    await page.locator('#wh-target-url-error').textContent(),
    'The target URL must start with https:// or http://, not ftp://.',
  );
  assert.ok(await page.locator('#step-1').isVisible(), 'step 1 stays');

  // A blocked address is for the server to refuse (nothing is dialled: it refuses to store it).
  await page.getByLabel('Target URL').fill('http://0.0.0.0/hook');
  await dialog.getByRole('button', { name: 'Next' }).click();
  await page.locator('#step-2').waitFor({ state: 'visible' });
  await dialog.getByRole('button', { name: 'Add webhook' }).click();

  // The server refuses the URL; the page goes back to step 1 and shows why, next to the field.
  await page.locator('#wh-target-url-error').waitFor({ state: 'visible' });
  assert.ok(await page.locator('#step-1').isVisible(), 'step 1 is shown again');
  assert.match(await page.locator('#wh-target-url-error').textContent(), /targetUrl points to a blocked address/);
  assert.equal(await page.getByLabel('Target URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await focusedId(page), 'wh-target-url');
  assert.ok(await page.locator('#webhook-form-error').isHidden(), 'the error is next to the field, not at the top');

  // A secret over the server's limit: its error shows next to the Secret field.
  await page.getByLabel('Target URL').fill(FIRST_TARGET);
  await page.getByLabel(/^Secret/).fill(LONG_SECRET);
  await dialog.getByRole('button', { name: 'Next' }).click();
  await dialog.getByRole('button', { name: 'Add webhook' }).click();
  await page.locator('#wh-secret-error').waitFor({ state: 'visible' });
  assert.match(await page.locator('#wh-secret-error').textContent(), /^secret is \d+ bytes long; the limit is 1024/);
  assert.equal(await focusedId(page), 'wh-secret');
  assert.ok(await page.locator('#wh-target-url-error').isHidden(), 'the fixed field has no error left');
  await page.getByLabel(/^Secret/).fill(SECRET);

  // A bad CA certificate: the error shows on step 2, in its section, opened.
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

  // An invalid proxy URL: the error shows next to the Proxy URL field, its section opened.
  await page.getByLabel('CA certificate').fill('');
  await dialog.locator('summary', { hasText: 'Certificate authority' }).click();
  await dialog.locator('summary', { hasText: 'Proxy' }).click();
  await page.getByLabel('Proxy URL').fill('ftp://proxy.payments.test:21');
  await dialog.locator('summary', { hasText: 'Proxy' }).click();
  assert.ok(await page.getByLabel('Proxy URL').isHidden(), 'the proxy section is closed again');
  await dialog.getByRole('button', { name: 'Add webhook' }).click();
  await page.locator('#wh-proxy-error').waitFor({ state: 'visible' });
  assert.match(await page.locator('#wh-proxy-error').textContent(), /proxy\.url must use http, https or socks5, not ftp/);
  assert.ok(await page.locator('#wh-proxy-section').evaluate((d) => d.open), 'the proxy section is opened');
  assert.equal(await page.getByLabel('Proxy URL').getAttribute('aria-invalid'), 'true');
  assert.equal(await focusedId(page), 'wh-proxy');
  assert.ok(await page.locator('#wh-ca-error').isHidden(), 'the fixed field has no error left');
  // The error belongs to this field: the field's description points to it.
  assert.match(await page.getByLabel('Proxy URL').getAttribute('aria-describedby'), /wh-proxy-error/);

  await dialog.getByRole('button', { name: 'Back' }).click();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  page.off('request', onRequest);
  assert.equal(posts.length, 4, 'the blocked address, the long secret, the CA and the proxy reached the server; the bad URLs did not');
  assert.equal(await page.locator('#wh-secret').inputValue(), '', 'closing the modal clears the secret');
  const list = await server.api('GET', SCOPE_API);
  assert.equal(list.body.items.length, 0);
  await assertNoSecretInPage(page);
});

test('the modal works with the keyboard alone: tab order of both steps, Tab stays inside', STEP, async () => {
  await page.locator('#add-webhook').focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Add webhook' });
  await dialog.waitFor();
  assert.equal(await focusedName(page), 'wh-target-url');

  // Step 1: URL, secret, (the search, shown for a long catalogue), each event, Cancel, Next;
  // then round to the Close button and the URL again.
  const boxes = await page.locator('#wh-events input[type="checkbox"]').evaluateAll((l) => l.map((b) => b.id));
  assert.ok(boxes.length > 0);
  const search = (await page.locator('#wh-events-search').isVisible()) ? ['wh-events-search'] : [];
  await tabThrough(page, ['wh-secret', ...search, ...boxes, 'wh-cancel', 'wh-next', 'Close', 'wh-target-url']);
  // Backwards past the first control: to the last.
  await tabThrough(page, ['Close', 'wh-next', 'wh-cancel'], 'Shift+Tab');

  // Fill step 1 from the keyboard and go on with Enter.
  await page.locator('#wh-target-url').focus();
  await page.keyboard.type('https://keyboard.payments.test/hook');
  await page.keyboard.press('Tab');
  await page.keyboard.type(SECRET);
  await page.keyboard.press('Tab');
  if (search.length) await page.keyboard.press('Tab');
  assert.equal(await focusedName(page), boxes[0]);
  await page.keyboard.press('Space');
  assert.ok(await page.locator(`#${boxes[0]}`).isChecked());
  await page.locator('#wh-secret').focus();
  await page.keyboard.press('Enter');
  await page.locator('#step-2').waitFor({ state: 'visible' });

  // Step 2: the two section headers, Back, Add webhook; round to Close and the first header.
  assert.equal(await focusedName(page), 'Certificate authority');
  await tabThrough(page, ['Proxy', 'wh-back', 'wh-submit', 'Close', 'Certificate authority']);
  // Open both sections from the keyboard: their fields join the order, the file input too.
  await page.keyboard.press('Enter');
  assert.ok(await page.locator('#wh-ca-section').evaluate((d) => d.open), 'Enter opens the section');
  await tabThrough(page, ['wh-ca', 'wh-ca-file', 'Proxy']);
  await page.keyboard.press('Space');
  assert.ok(await page.locator('#wh-proxy-section').evaluate((d) => d.open), 'Space opens the section');
  await tabThrough(page, ['wh-proxy', 'wh-back', 'wh-submit', 'Close', 'Certificate authority']);
  await tabThrough(page, ['Close', 'wh-submit'], 'Shift+Tab');

  // Back from the keyboard, then Escape closes and the focus returns to the opener.
  await page.locator('#wh-back').focus();
  await page.keyboard.press('Enter');
  await page.locator('#step-1').waitFor({ state: 'visible' });
  assert.equal(await focusedName(page), 'wh-target-url');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await focusedId(page), 'add-webhook');
  assert.equal((await server.api('GET', SCOPE_API)).body.items.length, 0, 'nothing was added');
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
  await reload(page);
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
  await closePage(tab);
});

test('the event filter opens, applies and clears with the keyboard alone', STEP, async () => {
  await page.locator('#filter-summary').focus();
  await page.keyboard.press('Enter');
  const panel = page.locator('.filter-panel');
  await panel.waitFor();
  // The focus moves into the panel; Tab reaches tag_created, Space checks it.
  const boxes = await page.locator('#filter-options input[type="checkbox"]').evaluateAll((l) =>
    l.map((b) => ({ id: b.id, value: b.value })),
  );
  assert.equal(await focusedName(page), boxes[0].id);
  const tag = boxes.findIndex((b) => b.value === 'tag_created');
  assert.ok(tag >= 0, 'tag_created is in the filter');
  await tabThrough(page, boxes.slice(1, tag + 1).map((b) => b.id));
  await page.keyboard.press('Space');
  assert.ok(await page.locator(`#${boxes[tag].id}`).isChecked());
  // On past the other events to the panel's buttons.
  await tabThrough(page, [...boxes.slice(tag + 1).map((b) => b.id), 'filter-clear', 'filter-apply']);
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.hash === `${SCOPE_HASH}?events=tag_created`);
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 1);
  assert.ok(await row(page, 'https://releases.payments.test/hook').isVisible());
  assert.equal(await focusedName(page), 'filter-summary', 'the focus goes back to the filter button');
  assert.ok(await panel.isHidden(), 'the panel is closed');

  // Escape closes the panel without applying anything.
  await page.keyboard.press('Enter');
  await panel.waitFor();
  await page.keyboard.press('Space');
  await page.keyboard.press('Escape');
  await panel.waitFor({ state: 'hidden' });
  assert.equal(await focusedName(page), 'filter-summary');
  assert.equal(new URL(page.url()).hash, `${SCOPE_HASH}?events=tag_created`, 'Escape changes no filter');

  // Clear, from the keyboard.
  await page.keyboard.press('Enter');
  await panel.waitFor();
  await page.locator('#filter-clear').focus();
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.hash === SCOPE_HASH);
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 2);
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

test('a webhook the server disabled (its receiver answered 410 Gone) shows the server\'s reason', STEP, async () => {
  const gone = `${new URL(receiver.url).origin}/gone/hook`;
  const created = await server.api('POST', '/api/companies/retired/webhooks', {
    targetUrl: gone,
    secret: OTHER_SECRET,
    events: ['project_created'],
  });
  assert.equal(created.status, 201);
  const id = created.body.id;
  await page.goto(`${server.base}/#/companies/retired`);
  const target = row(page, gone);
  await target.waitFor();
  assert.match(await target.locator('.cell-status').textContent(), /^Enabled$/);

  // "Send test event" from the page: the receiver answers 410 and the server disables it.
  const before = receiver.requests.length;
  await target.getByRole('button', { name: /^Deliveries/ }).click();
  const deliveries = page.locator('tr.deliveries-row');
  await deliveries.getByRole('button', { name: 'Send test event' }).click();
  await receiver.waitFor(before + 1);
  const disabled = await until(`/api/webhooks/${id}`, (w) => w.enabled === false);
  assert.match(disabled.disabledReason, /410 Gone/);
  await deliveries.locator('.delivery .status-failed').waitFor({ timeout: 30_000 });
  assert.match(await deliveries.locator('.delivery').first().textContent(), /HTTP 410/);

  // The panel's Refresh reads the webhook again: the row shows the server's own reason.
  await deliveries.getByRole('button', { name: 'Refresh' }).click();
  await target.getByText('Disabled', { exact: true }).waitFor();
  assert.equal(await target.locator('.status-reason').textContent(), disabled.disabledReason);

  // And so does a fresh load of the page.
  await reload(page);
  await row(page, gone).getByText('Disabled', { exact: true }).waitFor();
  assert.equal(await row(page, gone).locator('.status-reason').textContent(), disabled.disabledReason);
});

test('editing a webhook whose proxy has a user and password keeps them when the proxy is not touched', STEP, async () => {
  const proxy = await startProxy(PROXY_USER, PROXY_PASSWORD);
  try {
    const scopeApi = '/api/companies/proxied/webhooks';
    const created = await server.api('POST', scopeApi, {
      targetUrl: receiver.url,
      secret: OTHER_SECRET,
      events: ['project_created'],
      proxy: { url: `http://${PROXY_USER}:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}/` },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const shown = created.body.proxy.url;
    assert.match(shown, /^http:\/\/\*\*\*@127\.0\.0\.1:\d+\/$/, 'the API shows the credentials as ***');
    const id = created.body.id;

    await page.goto(`${server.base}/#/companies/proxied`);
    const target = row(page, receiver.url);
    await target.waitFor();
    await target.getByRole('button', { name: /^Edit/ }).click();
    const dialog = page.getByRole('dialog', { name: 'Edit webhook' });
    await dialog.waitFor();
    await dialog.getByRole('checkbox', { name: 'service_created' }).check();
    await dialog.getByRole('button', { name: 'Next' }).click();
    assert.ok(await page.locator('#wh-proxy-section').evaluate((d) => d.open), 'a set proxy shows open');
    assert.equal(await page.getByLabel('Proxy URL').inputValue(), shown, 'the page shows the masked proxy');

    const patch = page.waitForRequest((r) => r.method() === 'PATCH' && r.url().endsWith(`/api/webhooks/${id}`));
    const answered = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().endsWith(`/api/webhooks/${id}`));
    await dialog.getByRole('button', { name: 'Save changes' }).click();
    assert.deepEqual((await patch).postDataJSON(), { events: ['project_created', 'service_created'] }, 'no proxy sent back');
    assert.equal((await answered).status(), 200);
    await dialog.waitFor({ state: 'hidden' });
    assert.ok(await page.locator('#webhook-form-error').isHidden());

    const stored = (await server.api('GET', `/api/webhooks/${id}`)).body;
    assert.equal(stored.proxy.url, shown, 'the same proxy, masked the same way');
    assert.deepEqual(stored.events, ['project_created', 'service_created']);

    // The credentials are still the real ones: a test event goes through the proxy, which
    // checks them, to the receiver.
    const before = receiver.requests.length;
    await target.getByRole('button', { name: /^Deliveries/ }).click();
    const deliveries = page.locator('tr.deliveries-row');
    await deliveries.getByRole('button', { name: 'Send test event' }).click();
    const requests = await receiver.waitFor(before + 1);
    const request = requests[before];
    assert.equal(request.headers['x-mia-signature'], signature(request.body, OTHER_SECRET));
    assert.ok(proxy.seen.length >= 1, 'the delivery went through the proxy');
    assert.ok(proxy.seen.every((r) => r.authorized), 'with the stored user and password');
    await deliveries.locator('.delivery .status-succeeded').waitFor({ timeout: 30_000 });
    await assertNoSecretInPage(page);
  } finally {
    await proxy.close();
  }
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
  await page.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 4);
  await reload(page);
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
  await closePage(phone);
});

test('a company admin signs in without choosing a scope, lands on the company and adds a webhook there', STEP, async () => {
  // The token an operator makes with the binary, on the server's database.
  const token = server.createToken('company-admin', { tenant: 'acme' });
  const tab = await browser.context.newPage();
  watch(tab);
  await tab.goto(`${server.base}/`);
  await signIn(tab, token);
  await tab.waitForURL((url) => url.hash === '#/companies/acme');
  assert.equal(await tab.locator('#scope-kind').inputValue(), 'company');
  assert.equal(await tab.locator('#scope-tenant').inputValue(), 'acme');
  assert.equal(await tab.locator('#whoami').textContent(), 'Company admin of acme');
  assert.ok(await tab.locator('#scope-kind option[value="instance"]').isDisabled(), 'the instance is out of reach');
  await tab.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 4);
  assert.equal(await tab.getByRole('heading', { name: 'Cannot show these webhooks' }).count(), 0);

  await tab.getByRole('button', { name: 'Add webhook' }).click();
  const dialog = tab.getByRole('dialog', { name: 'Add webhook' });
  await dialog.waitFor();
  await tab.getByLabel('Target URL').fill('https://company-admin.acme.test/hook');
  await tab.getByLabel(/^Secret/).fill(COMPANY_SECRET);
  await dialog.getByRole('checkbox', { name: 'project_created' }).check();
  await dialog.getByRole('button', { name: 'Next' }).click();
  await dialog.getByRole('button', { name: 'Add webhook' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await row(tab, 'https://company-admin.acme.test/hook').waitFor();
  assert.equal(await tab.locator('tr.webhook-row').count(), 5);
  const list = await server.api('GET', '/api/companies/acme/webhooks?limit=100');
  const added = list.body.items.find((w) => w.targetUrl === 'https://company-admin.acme.test/hook');
  assert.deepEqual(added.scope, { type: 'company', tenantId: 'acme' });

  // Another company: out of reach; the page says so, offers no "Add webhook", and leads back.
  await tab.evaluate(() => {
    location.hash = '#/companies/globex';
  });
  await tab.getByRole('heading', { name: 'Cannot show these webhooks' }).waitFor();
  assert.match(await tab.locator('#empty-text').textContent(), /manages those of company acme and of its projects/);
  assert.ok(await tab.locator('#add-webhook').isHidden(), 'no "Add webhook" where nothing can be added');
  await tab.getByRole('button', { name: 'Show my webhooks' }).click();
  await tab.waitForURL((url) => url.hash === '#/companies/acme');
  await tab.waitForFunction(() => document.querySelectorAll('tr.webhook-row').length === 5);
  assert.ok(await tab.locator('#add-webhook').isVisible());

  // A project of the company is in reach.
  await tab.locator('#scope-kind').selectOption('project');
  await tab.locator('#scope-project').fill('payments');
  await tab.getByRole('button', { name: 'Show webhooks' }).click();
  await tab.waitForURL((url) => url.hash === SCOPE_HASH);
  await row(tab, 'https://releases.payments.test/hook').waitFor();
  assert.ok(await tab.locator('#add-webhook').isVisible());
  await assertNoSecretInPage(tab);
  await closePage(tab);
});

test('an emitter token is told it cannot manage webhooks; a project admin lands on the project', STEP, async () => {
  const emitter = server.createToken('emitter');
  const project = server.createToken('project-admin', { tenant: 'acme', project: 'payments' });
  const tab = await browser.context.newPage();
  watch(tab);
  await tab.goto(`${server.base}/`);
  await tab.locator('#signin-token').fill(emitter);
  await tab.getByRole('button', { name: 'Sign in' }).click();
  await tab.locator('#signin-token-error').waitFor({ state: 'visible' });
  assert.match(await tab.locator('#signin-token-error').textContent(), EMITTER_MESSAGE);
  assert.ok(await tab.locator('#app-view').isHidden(), 'no webhooks page for an emitter');
  assert.equal(await tab.evaluate(() => sessionStorage.length), 0, 'the emitter token is not kept');
  assert.equal(await tab.locator('#signin-token').inputValue(), '');
  assert.equal(await focusedId(tab), 'signin-token', 'ready for another token');

  // Signing in again with another token works at once.
  await signIn(tab, project);
  await tab.waitForURL((url) => url.hash === SCOPE_HASH);
  assert.equal(await tab.locator('#whoami').textContent(), 'Project admin of acme / payments');
  assert.equal(await tab.locator('#scope-kind').inputValue(), 'project');
  assert.ok(await tab.locator('#scope-kind option[value="company"]').isDisabled());
  await row(tab, 'https://releases.payments.test/hook').waitFor();
  assert.ok(await tab.locator('#add-webhook').isVisible());
  await tab.getByRole('button', { name: 'Sign out' }).click();
  await tab.locator('#signin-view').waitFor({ state: 'visible' });
  await closePage(tab);
});

test('no page and no API response ever contained a secret, the log neither, and the page broke no rule', STEP, async () => {
  await Promise.all(bodyChecks);
  assert.deepEqual(unreadable, [], 'every response body to the browser was read');
  assert.ok(responsesChecked > 30, `only ${responsesChecked} responses to the browser were checked`);
  assert.ok(apiResponsesChecked > 40, `only ${apiResponsesChecked} responses to the tests were checked`);
  assert.deepEqual(leaks, []);
  assert.deepEqual(pageProblems, [], 'no script error and no CSP violation');
  await assertNoSecretInPage(page);
  const log = server.output();
  for (const secret of secrets) assert.ok(!log.includes(secret), 'the server log contains a secret');
});
