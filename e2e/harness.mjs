// What the browser tests run against: the real `mia-webhooks` binary on 127.0.0.1 with a
// SQLite file in a temporary directory, a local receiver that verifies X-Mia-Signature, and
// Debian's headless Chromium driven by playwright-core (which never downloads a browser here).

import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(E2E_DIR, '..');

/** The binary under test: `MIA_WEBHOOKS_BIN`, else the release build of the workspace. */
export const BINARY = process.env.MIA_WEBHOOKS_BIN || path.join(ROOT, 'target', 'release', 'mia-webhooks');

/** Debian's Chromium, or `MIA_E2E_CHROMIUM`. */
export const CHROMIUM = process.env.MIA_E2E_CHROMIUM || '/usr/bin/chromium';

/** Where screenshots go: `MIA_E2E_SCREENSHOTS`, else docs/screenshots (shown in the README). */
export const SCREENSHOTS = process.env.MIA_E2E_SCREENSHOTS || path.join(ROOT, 'docs', 'screenshots');

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A random string of `bytes` random bytes, hex. */
export function randomHex(bytes) {
  return randomBytes(bytes).toString('hex');
}

/** X-Mia-Signature: lowercase hex of SHA-256(payload bytes ++ secret bytes). */
export function signature(body, secret) {
  return createHash('sha256').update(Buffer.concat([body, Buffer.from(secret, 'utf8')])).digest('hex');
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts the binary with a fresh SQLite database and an admin token. Its output is kept (to
 * show when something fails, and to check that no secret is ever logged). `inspect(what, text)`,
 * when given, sees the headers and body of every answer to `api()`.
 */
export async function startServer({ inspect } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`no server binary at ${BINARY}: build it (cargo build --release -p mia-webhooks) or set MIA_WEBHOOKS_BIN`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mia-webhooks-e2e-'));
  const token = `e2e-admin-${randomHex(24)}`;
  const port = await freePort();
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('MIA_WEBHOOKS_')) env[key] = value;
  }
  Object.assign(env, {
    MIA_WEBHOOKS_LISTEN: `127.0.0.1:${port}`,
    MIA_WEBHOOKS_DATABASE_URL: `sqlite://${path.join(dir, 'db.sqlite')}`,
    MIA_WEBHOOKS_ADMIN_TOKEN: token,
    MIA_WEBHOOKS_ALLOWED_CIDRS: '127.0.0.0/8',
    // Two delays, as a list: a failing delivery retries quickly and then gives up.
    MIA_WEBHOOKS_RETRY_SCHEDULE_SECS: '1,1',
  });
  const child = spawn(BINARY, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`the server exited (${JSON.stringify(exited)}) before it was ready:\n${output}`);
    try {
      const response = await fetch(`${base}/healthz`);
      if (response.ok) break;
    } catch (_) {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server did not answer /healthz within 60 s:\n${output}`);
    }
    await sleep(100);
  }
  return {
    base,
    token,
    output: () => output,
    async api(method, route, body) {
      const response = await fetch(`${base}${route}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      if (inspect) inspect(`${method} ${route}`, `${JSON.stringify(Object.fromEntries(response.headers))}\n${text}`);
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    /**
     * Creates a token with the binary, as an operator would: `mia-webhooks token create --role
     * ROLE [--tenant T] [--project P]` on the server's database. Resolves to the token.
     */
    createToken(role, { tenant, project } = {}) {
      const args = ['token', 'create', '--role', role];
      if (tenant) args.push('--tenant', tenant);
      if (project) args.push('--project', project);
      const out = execFileSync(BINARY, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      // "Created a ... token. It is shown only this once:" then the token alone on a line.
      const found = out.split('\n').map((l) => l.trim()).find((l) => l.startsWith('mwh_'));
      if (!found) throw new Error(`no token in the output of mia-webhooks ${args.join(' ')}`);
      return found;
    },
    async stop() {
      if (!exited) {
        const done = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await done;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A webhook receiver on 127.0.0.1 that records every request with its raw body. It answers 200,
 * except under `/gone`, where it answers 410 Gone (which makes the server disable the webhook).
 */
export async function startReceiver() {
  const requests = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const record = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) };
      requests.push(record);
      for (const waiter of waiters.splice(0)) waiter();
      if (req.url.startsWith('/gone')) {
        res.writeHead(410, { 'Content-Type': 'text/plain' });
        res.end('this endpoint was removed');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ received: req.headers['x-mia-delivery'] || null }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/hooks/mia`,
    requests,
    /** Waits until `count` requests arrived (or fails after `ms`). */
    async waitFor(count, ms = 30_000) {
      const deadline = Date.now() + ms;
      while (requests.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`the receiver got ${requests.length} requests, expected ${count}`);
        await Promise.race([new Promise((resolve) => waiters.push(resolve)), sleep(Math.min(left, 500))]);
      }
      return requests;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * A forward HTTP proxy on 127.0.0.1 that demands `user:password` (Proxy-Authorization: Basic)
 * and passes requests on to 127.0.0.1 only. It records each request it saw and whether its
 * credentials were right.
 */
export async function startProxy(user, password) {
  const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const seen = [];
  const server = http.createServer((req, res) => {
    const authorized = req.headers['proxy-authorization'] === expected;
    let target;
    try {
      target = new URL(req.url);
    } catch (_) {
      target = null;
    }
    seen.push({ method: req.method, url: req.url, authorized });
    if (!authorized) {
      res.writeHead(407, { 'Proxy-Authenticate': 'Basic realm="e2e"' });
      res.end();
      return;
    }
    if (!target || target.protocol !== 'http:' || target.hostname !== '127.0.0.1') {
      // Tests send traffic to this machine only.
      res.writeHead(403);
      res.end();
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const upstream = http.request(target, { method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A self-signed CA certificate, PEM, made by openssl (node's crypto cannot make one). */
export function makeCaPem() {
  return execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', '/dev/null', '-subj', '/CN=mia-webhooks e2e CA', '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE',
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  ).trim();
}

/** Headless Chromium with a fresh profile; `close()` removes the profile. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium`);
  const profile = await mkdtemp(path.join(os.tmpdir(), 'mia-webhooks-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(20_000);
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
