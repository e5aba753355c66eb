// The deliveries panel of a webhook: recent deliveries with their attempts, Redeliver, and
// "Send test event". It refreshes itself while a delivery is in progress.

import { NetworkError, api, enc } from './api.js';
import { $, button, dateFormat, duration, el, keepFocus, plural, reportError, timeEl, toast } from './dom.js';
import { state } from './state.js';

const DELIVERY_PAGE_SIZE = 10;
const POLL_MS = 1000;
const POLL_MAX = 180;

const STATUS_LABELS = {
  pending: 'Pending',
  delivering: 'Delivering',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
};
const ERROR_KIND_LABELS = {
  timeout: 'Timed out',
  connect: 'Connection failed',
  dns: 'DNS lookup failed',
  tls: 'TLS error',
  blocked_address: 'Blocked address',
  redirect: 'Redirect not followed',
  body_too_large: 'Response too large',
  http_status: 'HTTP error',
  proxy: 'Proxy error',
  other: 'Error',
};

export function toggleDeliveries(webhook) {
  const row = document.querySelector(`tr.webhook-row[data-id="${CSS.escape(webhook.id)}"]`);
  const toggle = row.querySelector('[data-action="deliveries"]');
  if (state.panels.has(webhook.id)) {
    clearTimeout(state.panels.get(webhook.id).timer);
    state.panels.delete(webhook.id);
    const panel = $(`deliveries-${webhook.id}`);
    if (panel) panel.remove();
    toggle.setAttribute('aria-expanded', 'false');
    row.classList.remove('expanded');
    return;
  }
  state.panels.set(webhook.id, {
    items: null,
    nextCursor: null,
    attempts: new Map(),
    polls: 0,
    timer: null,
    generation: 0,
    message: 'Loading deliveries…',
  });
  row.after(deliveriesRow(webhook));
  toggle.setAttribute('aria-expanded', 'true');
  row.classList.add('expanded');
  loadDeliveries(webhook.id, false, true);
}

export function deliveriesRow(webhook) {
  const row = $('deliveries-template').content.firstElementChild.cloneNode(true);
  row.id = `deliveries-${webhook.id}`;
  row.dataset.webhook = webhook.id;
  const section = row.querySelector('section');
  section.setAttribute('aria-label', `Deliveries of ${webhook.targetUrl}`);
  row.querySelector('[data-action="refresh"]').dataset.key = `refresh:${webhook.id}`;
  row.querySelector('[data-action="test"]').dataset.key = `test:${webhook.id}`;
  row.querySelector('[data-action="more-deliveries"]').dataset.key = `more:${webhook.id}`;
  renderDeliveries(webhook.id, row);
  return row;
}

export async function loadDeliveries(id, append, resetPolls) {
  const panel = state.panels.get(id);
  if (!panel) return;
  clearTimeout(panel.timer);
  if (resetPolls) panel.polls = 0;
  const generation = ++panel.generation;
  const params = [`limit=${DELIVERY_PAGE_SIZE}`];
  if (append && panel.nextCursor) params.push(`cursor=${enc(panel.nextCursor)}`);
  let page;
  try {
    page = await api('GET', `/api/webhooks/${enc(id)}/deliveries?${params.join('&')}`);
  } catch (error) {
    if (state.panels.get(id) !== panel || generation !== panel.generation) return;
    panel.message = error.message;
    renderDeliveries(id);
    if (error instanceof NetworkError) reportError(error, () => loadDeliveries(id, append, true));
    return;
  }
  if (state.panels.get(id) !== panel || generation !== panel.generation) return;
  const items = page.items || [];
  panel.items = append && panel.items ? panel.items.concat(items) : items;
  panel.nextCursor = page.nextCursor || null;
  panel.message = null;
  // Refresh the attempts shown for deliveries that are still moving.
  const reloads = [];
  for (const [deliveryId, attempts] of panel.attempts) {
    const delivery = panel.items.find((d) => d.id === deliveryId);
    if (!delivery) panel.attempts.delete(deliveryId);
    else if (attempts === null || attempts.attemptCount !== delivery.attemptCount || attempts.status !== delivery.status) {
      reloads.push(loadAttempts(id, deliveryId, false));
    }
  }
  await Promise.all(reloads);
  if (state.panels.get(id) !== panel) return;
  renderDeliveries(id);
  const moving = panel.items.some((d) => d.status === 'pending' || d.status === 'delivering');
  // Deliveries that just ended may have changed the webhook (a 410 Gone disables it): the
  // table reads it again.
  if (panel.moving && !moving) document.dispatchEvent(new CustomEvent('deliveries-settled', { detail: { id } }));
  panel.moving = moving;
  if (moving && panel.polls < POLL_MAX) {
    panel.polls += 1;
    panel.timer = setTimeout(() => loadDeliveries(id, false, false), POLL_MS);
  }
}

function renderDeliveries(id, rowArg) {
  const panel = state.panels.get(id);
  const row = rowArg || $(`deliveries-${id}`);
  if (!panel || !row) return;
  const list = row.querySelector('.delivery-list');
  const status = row.querySelector('.deliveries-status');
  keepFocus(() => {
    list.replaceChildren();
    if (panel.message) {
      status.textContent = panel.message;
    } else if (panel.items && panel.items.length === 0) {
      status.textContent = 'No deliveries yet. Send a test event to check the target URL and the secret.';
    } else if (panel.items) {
      const moving = panel.items.filter((d) => d.status === 'pending' || d.status === 'delivering').length;
      status.textContent = moving
        ? `${plural(moving, 'delivery is', 'deliveries are')} in progress; this list updates by itself.`
        : `${plural(panel.items.length, 'delivery', 'deliveries')}, newest first.`;
    }
    for (const delivery of panel.items || []) list.append(deliveryItem(delivery, panel));
    row.querySelector('[data-action="more-deliveries"]').hidden = !panel.nextCursor;
  });
}

function attemptOutcome(attempt) {
  if (attempt.errorKind && attempt.errorKind !== 'http_status') {
    const label = ERROR_KIND_LABELS[attempt.errorKind] || attempt.errorKind;
    return { ok: false, text: `${label} (${attempt.errorKind})` };
  }
  if (attempt.statusCode !== undefined && attempt.statusCode !== null) {
    const ok = attempt.statusCode >= 200 && attempt.statusCode < 300 && !attempt.errorKind;
    return { ok, text: `HTTP ${attempt.statusCode}` };
  }
  return { ok: !attempt.errorKind, text: attempt.errorKind || 'No answer' };
}

function deliveryItem(delivery, panel) {
  const li = el('li', 'delivery');
  li.dataset.delivery = delivery.id;
  const main = el('div', 'delivery-main');
  main.append(el('span', `status status-${delivery.status}`, STATUS_LABELS[delivery.status] || delivery.status));
  main.append(el('span', 'delivery-event', delivery.eventName));
  const when = el('span', 'delivery-time');
  when.append(timeEl(delivery.createdAt));
  main.append(when);
  main.append(el('span', 'muted', plural(delivery.attemptCount, 'attempt', 'attempts')));
  if (delivery.lastAttempt) {
    const outcome = attemptOutcome(delivery.lastAttempt);
    const last = el('span', 'attempt-line');
    last.append(el('span', `attempt-outcome ${outcome.ok ? 'ok' : 'bad'}`, outcome.text));
    last.append(el('span', 'muted', duration(delivery.lastAttempt.durationMs)));
    main.append(last);
  }
  main.append(el('span', 'spacer'));
  const actions = el('div', 'delivery-actions');
  const shown = panel.attempts.has(delivery.id);
  const toggle = button(shown ? 'Hide attempts' : 'Attempts', 'btn-small', `attempts:${delivery.id}`);
  toggle.dataset.action = 'attempts';
  toggle.dataset.delivery = delivery.id;
  toggle.setAttribute('aria-expanded', String(shown));
  toggle.setAttribute('aria-controls', `attempts-${delivery.id}`);
  toggle.disabled = delivery.attemptCount === 0;
  const again = button('Redeliver', 'btn-small', `redeliver:${delivery.id}`);
  again.dataset.action = 'redeliver';
  again.dataset.delivery = delivery.id;
  again.setAttribute('aria-label', `Redeliver ${delivery.eventName} of ${dateFormat.format(new Date(delivery.createdAt))}`);
  actions.append(toggle, again);
  main.append(actions);
  li.append(main);

  if (delivery.nextAttemptAt && (delivery.status === 'pending' || delivery.status === 'delivering') && delivery.attemptCount > 0) {
    const next = el('p', 'delivery-time', 'Next attempt: ');
    next.append(timeEl(delivery.nextAttemptAt));
    li.append(next);
  }
  if (delivery.lastAttempt && delivery.lastAttempt.error && !shown) {
    li.append(el('p', 'excerpt', delivery.lastAttempt.error));
  }
  if (shown) li.append(attemptsList(delivery, panel.attempts.get(delivery.id)));
  return li;
}

function attemptsList(delivery, detail) {
  const list = el('ol', 'attempts');
  list.id = `attempts-${delivery.id}`;
  list.setAttribute('aria-label', `Attempts of ${delivery.eventName}`);
  if (!detail) {
    list.append(el('li', 'attempt muted', 'Loading attempts…'));
    return list;
  }
  if (detail.error) {
    list.append(el('li', 'attempt field-error', detail.error));
    return list;
  }
  if (!detail.attempts.length) list.append(el('li', 'attempt muted', 'No attempt yet.'));
  for (const attempt of detail.attempts) {
    const li = el('li', 'attempt');
    const line = el('div', 'attempt-line');
    line.append(el('strong', null, `#${attempt.number}`));
    line.append(timeEl(attempt.startedAt));
    const outcome = attemptOutcome(attempt);
    line.append(el('span', `attempt-outcome ${outcome.ok ? 'ok' : 'bad'}`, outcome.text));
    line.append(el('span', 'muted', duration(attempt.durationMs)));
    li.append(line);
    if (attempt.error) li.append(el('p', 'muted', attempt.error));
    if (attempt.responseExcerpt) {
      const pre = el('pre', 'excerpt', attempt.responseExcerpt);
      pre.setAttribute('aria-label', 'Response excerpt');
      li.append(pre);
    }
    list.append(li);
  }
  return list;
}

async function loadAttempts(webhookId, deliveryId, render) {
  const panel = state.panels.get(webhookId);
  if (!panel) return;
  let value;
  try {
    const detail = await api('GET', `/api/deliveries/${enc(deliveryId)}`);
    value = { attempts: detail.attempts || [], attemptCount: detail.attemptCount, status: detail.status };
  } catch (error) {
    value = { attempts: [], error: error.message, attemptCount: -1, status: null };
  }
  if (state.panels.get(webhookId) !== panel || !panel.attempts.has(deliveryId)) return;
  panel.attempts.set(deliveryId, value);
  if (render) renderDeliveries(webhookId);
}

export function toggleAttempts(webhookId, deliveryId) {
  const panel = state.panels.get(webhookId);
  if (!panel) return;
  if (panel.attempts.has(deliveryId)) {
    panel.attempts.delete(deliveryId);
    renderDeliveries(webhookId);
    return;
  }
  panel.attempts.set(deliveryId, null);
  renderDeliveries(webhookId);
  loadAttempts(webhookId, deliveryId, true);
}

export async function sendTestEvent(webhook, trigger) {
  const panel = state.panels.get(webhook.id);
  trigger.disabled = true;
  try {
    const answer = await api('POST', `/api/webhooks/${enc(webhook.id)}/test`);
    if (panel) panel.message = null;
    toast(`Test event sent: ${plural(answer.deliveries, 'delivery', 'deliveries')} queued.`);
    await loadDeliveries(webhook.id, false, true);
  } catch (error) {
    if (panel) {
      panel.message = `The test event was not sent: ${error.message}`;
      renderDeliveries(webhook.id);
    }
    reportError(error, () => sendTestEvent(webhook, trigger));
  } finally {
    trigger.disabled = false;
    const again = document.querySelector(`[data-key="test:${CSS.escape(webhook.id)}"]`);
    if (again) again.disabled = false;
  }
}

export async function redeliver(webhookId, deliveryId, trigger) {
  trigger.disabled = true;
  try {
    await api('POST', `/api/deliveries/${enc(deliveryId)}/redeliver`);
    toast('Redelivery queued.');
    await loadDeliveries(webhookId, false, true);
    const focusTarget = document.querySelector(`[data-key="refresh:${CSS.escape(webhookId)}"]`);
    if (document.activeElement === document.body && focusTarget) focusTarget.focus();
  } catch (error) {
    reportError(error, () => redeliver(webhookId, deliveryId, trigger));
  } finally {
    trigger.disabled = false;
  }
}

/** Stops every panel (signing out, another scope). */
export function closePanels() {
  for (const panel of state.panels.values()) clearTimeout(panel.timer);
  state.panels.clear();
}

/** Forgets the panel of a webhook that is gone. */
export function dropPanel(id) {
  const panel = state.panels.get(id);
  if (panel) clearTimeout(panel.timer);
  state.panels.delete(id);
}
