// The webhook modals: add and edit (two steps: details, then advanced settings) and the delete
// confirmation. API errors land next to the field they concern, on the step that holds it.

import { ApiError, api, enc, scopeApiPath } from './api.js';
import { SEARCH_THRESHOLD, buildChecklist, catalogEntries, checkedValues, filterChecklist } from './checklist.js';
import { dropPanel } from './deliveries.js';
import { $, clearFieldError, el, hideBanner, reportError, setFieldError, toast } from './dom.js';
import { closeModal, guardModal, openModal, setBusy } from './modal.js';
import { state } from './state.js';

/** What the page does after a change: set by wireWebhookForms. */
const after = { saved: () => {}, deleted: () => {} };

const form = {
  mode: 'create',
  webhook: null,
  step: 1,
};

const FIELD_INPUTS = [
  ['wh-target-url', 'wh-target-url-error'],
  ['wh-secret', 'wh-secret-error'],
  ['wh-events-field', 'wh-events-error'],
  ['wh-enabled', 'wh-enabled-error'],
  ['wh-ca', 'wh-ca-error'],
  ['wh-proxy', 'wh-proxy-error'],
];

function clearWebhookErrors() {
  for (const [input, error] of FIELD_INPUTS) clearFieldError(input, error);
  $('webhook-form-error').hidden = true;
  $('webhook-form-error').textContent = '';
}

export function openWebhookModal(mode, webhook, opener) {
  form.mode = mode;
  form.webhook = webhook || null;
  const editing = mode === 'edit';
  $('webhook-modal-title').textContent = editing ? 'Edit webhook' : 'Add webhook';
  $('wh-submit').textContent = editing ? 'Save changes' : 'Add webhook';
  clearWebhookErrors();

  $('wh-target-url').value = editing ? webhook.targetUrl : '';
  const secret = $('wh-secret');
  secret.value = '';
  secret.required = !editing;
  secret.setAttribute('aria-required', String(!editing));
  secret.placeholder = editing ? 'leave empty to keep the current secret' : '';
  $('wh-secret-req').hidden = editing;
  $('wh-secret-help').textContent = editing
    ? 'Leave empty to keep the current secret. A new secret replaces it at once and will never be shown again.'
    : 'The secret signs every request (X-Mia-Signature). It will never be shown again: keep a copy where your receiver can read it.';

  const subscribed = new Set(editing ? webhook.events : []);
  const entries = catalogEntries(editing ? webhook.events : []);
  buildChecklist($('wh-events'), entries, subscribed, 'wh-event', onEventsChange);
  $('wh-events-search').value = '';
  $('wh-events-search').hidden = entries.length <= SEARCH_THRESHOLD;
  updateEventsCount();

  $('wh-enabled-field').hidden = !editing;
  $('wh-enabled').checked = editing ? webhook.enabled : true;

  const ca = editing && webhook.caCertificate ? webhook.caCertificate : '';
  $('wh-ca').value = ca;
  $('wh-ca-section').open = Boolean(ca);
  const proxy = editing && webhook.proxy && webhook.proxy.url ? webhook.proxy.url : '';
  $('wh-proxy').value = proxy;
  $('wh-proxy-section').open = Boolean(proxy);
  updateSectionPills();

  setBusy($('webhook-modal'), false);
  goToStep(1, false);
  openModal($('webhook-modal'), opener);
  $('wh-target-url').focus();
}

function onEventsChange() {
  clearFieldError('wh-events-field', 'wh-events-error');
  updateEventsCount();
}

function updateEventsCount() {
  const n = checkedValues($('wh-events')).length;
  $('wh-events-count').textContent = n ? `(${n} selected)` : '';
}

function updateSectionPills() {
  for (const [sectionId, inputId] of [['wh-ca-section', 'wh-ca'], ['wh-proxy-section', 'wh-proxy']]) {
    const summary = $(sectionId).querySelector('summary');
    let pill = summary.querySelector('.pill');
    const set = $(inputId).value.trim() !== '';
    if (set && !pill) {
      pill = el('span', 'pill', 'Set');
      summary.append(pill);
    } else if (!set && pill) {
      pill.remove();
    }
  }
}

function goToStep(step, focus) {
  form.step = step;
  $('step-1').hidden = step !== 1;
  $('step-2').hidden = step !== 2;
  for (const n of [1, 2]) {
    if (n === step) $(`step-tab-${n}`).setAttribute('aria-current', 'step');
    else $(`step-tab-${n}`).removeAttribute('aria-current');
  }
  $('step-tab-1').classList.toggle('done', step === 2);
  $('wh-back').hidden = step !== 2;
  $('wh-cancel').hidden = step !== 1;
  $('wh-next').hidden = step !== 1;
  $('wh-submit').hidden = step !== 2;
  if (focus) {
    if (step === 1) $('wh-target-url').focus();
    else $('wh-ca-section').querySelector('summary').focus();
  }
}

// What is wrong with a target URL that the page can tell without the server, or null. The
// server checks the rest (a blocked address, credentials in the URL, its length...) and its
// errors land next to the field too.
function targetUrlProblem(value) {
  if (!value) return 'Enter the target URL.';
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  if (scheme && !/^https?$/i.test(scheme[1])) {
    return `The target URL must start with https:// or http://, not ${scheme[1]}://.`;
  }
  if (!scheme) return 'Enter a full URL that starts with https:// or http://, such as https://example.com/webhooks.';
  let url;
  try {
    url = new URL(value);
  } catch (_) {
    return 'This is not a valid URL: check the host name, and look for spaces or stray characters.';
  }
  if (!url.hostname) return 'The target URL must name a host, such as https://example.com/webhooks.';
  return null;
}

// Client-side checks of step 1: required fields are filled and the target URL is an absolute
// http or https URL. The server validates everything else and its errors land next to the
// fields.
function checkStep1() {
  clearWebhookErrors();
  let first = null;
  const urlProblem = targetUrlProblem($('wh-target-url').value.trim());
  if (urlProblem) {
    setFieldError('wh-target-url', 'wh-target-url-error', urlProblem);
    first = first || $('wh-target-url');
  }
  if (form.mode === 'create' && $('wh-secret').value === '') {
    setFieldError('wh-secret', 'wh-secret-error', 'Enter a secret.');
    first = first || $('wh-secret');
  }
  if (checkedValues($('wh-events')).length === 0) {
    setFieldError('wh-events-field', 'wh-events-error', 'Choose at least one event.');
    first = first || $('wh-events').querySelector('input');
  }
  if (first) first.focus();
  return !first;
}

// Where an API error about `field` is shown.
function fieldPlace(field) {
  if (!field) return null;
  if (field === 'targetUrl') return { step: 1, input: 'wh-target-url', error: 'wh-target-url-error' };
  if (field === 'secret') return { step: 1, input: 'wh-secret', error: 'wh-secret-error' };
  if (field === 'events' || field.startsWith('events[') || field.startsWith('events.')) {
    return { step: 1, input: 'wh-events-field', error: 'wh-events-error', focus: () => $('wh-events').querySelector('input') };
  }
  if (field === 'enabled' && form.mode === 'edit') return { step: 1, input: 'wh-enabled', error: 'wh-enabled-error' };
  if (field === 'caCertificate') return { step: 2, input: 'wh-ca', error: 'wh-ca-error', section: 'wh-ca-section' };
  if (field === 'proxy' || field.startsWith('proxy.') || field === 'proxyUrl') {
    return { step: 2, input: 'wh-proxy', error: 'wh-proxy-error', section: 'wh-proxy-section' };
  }
  return null;
}

function showApiError(error) {
  const place = error instanceof ApiError ? fieldPlace(error.field) : null;
  if (!place) {
    reportError(error);
    return;
  }
  goToStep(place.step, false);
  if (place.section) $(place.section).open = true;
  setFieldError(place.input, place.error, error.message);
  const target = place.focus ? place.focus() : $(place.input);
  if (target) target.focus();
}

function sameSet(a, b) {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((x) => set.has(x));
}

function buildRequest() {
  const targetUrl = $('wh-target-url').value.trim();
  const secret = $('wh-secret').value;
  const events = checkedValues($('wh-events'));
  const ca = $('wh-ca').value.trim();
  const proxy = $('wh-proxy').value.trim();
  if (form.mode === 'create') {
    const body = { targetUrl, secret, events };
    if (ca) body.caCertificate = ca;
    if (proxy) body.proxy = { url: proxy };
    return body;
  }
  // Edit: only what changed. The secret only when a new one was typed; `null` clears.
  const w = form.webhook;
  const patch = {};
  if (targetUrl !== w.targetUrl) patch.targetUrl = targetUrl;
  if (secret !== '') patch.secret = secret;
  if (!sameSet(events, w.events || [])) patch.events = events;
  if (ca !== (w.caCertificate || '').trim()) patch.caCertificate = ca === '' ? null : ca;
  const oldProxy = w.proxy && w.proxy.url ? w.proxy.url : '';
  if (proxy !== oldProxy) patch.proxy = proxy === '' ? null : { url: proxy };
  const enabled = $('wh-enabled').checked;
  if (enabled !== w.enabled) patch.enabled = enabled;
  return patch;
}

async function onWebhookSubmit(event) {
  event.preventDefault();
  const dialog = $('webhook-modal');
  if (dialog.dataset.busy === 'true') return;
  if (form.step === 1) {
    if (checkStep1()) goToStep(2, true);
    return;
  }
  if (!checkStep1()) return;
  const request = buildRequest();
  if (form.mode === 'edit' && Object.keys(request).length === 0) {
    closeModal(dialog);
    toast('Nothing changed.');
    return;
  }
  setBusy(dialog, true);
  $('webhook-form-error').hidden = true;
  let saved;
  try {
    saved =
      form.mode === 'create'
        ? await api('POST', scopeApiPath(state.route), request)
        : await api('PATCH', `/api/webhooks/${enc(form.webhook.id)}`, request);
  } catch (error) {
    setBusy(dialog, false);
    if (!(error instanceof ApiError && error.status === 401)) showApiError(error);
    return;
  } finally {
    // The request holds the only other copy of the secret; drop it.
    if ('secret' in request) request.secret = '';
  }
  $('wh-secret').value = '';
  setBusy(dialog, false);
  const created = form.mode === 'create';
  closeModal(dialog);
  toast(created ? 'Webhook added.' : 'Webhook saved.');
  if (created && saved) hideBanner();
  after.saved();
}

function cleanWebhookModal() {
  // Whatever happened, no secret stays in the page.
  $('wh-secret').value = '';
  $('wh-ca-file').value = '';
  form.webhook = null;
}

function onCaFile() {
  const file = $('wh-ca-file').files[0];
  if (!file) return;
  if (file.size > 256 * 1024) {
    setFieldError('wh-ca', 'wh-ca-error', 'This file is too large for a CA certificate.');
    return;
  }
  file.text().then((text) => {
    $('wh-ca').value = text.trim();
    clearFieldError('wh-ca', 'wh-ca-error');
    updateSectionPills();
    $('wh-ca').focus();
  });
}

// ---------------------------------------------------------------- delete

const removal = { webhook: null };

export function openDeleteModal(webhook, opener) {
  removal.webhook = webhook;
  $('delete-target').textContent = webhook.targetUrl;
  $('delete-form-error').hidden = true;
  setBusy($('delete-modal'), false);
  openModal($('delete-modal'), opener);
  $('delete-cancel').focus();
}

async function onDeleteSubmit(event) {
  event.preventDefault();
  const dialog = $('delete-modal');
  const webhook = removal.webhook;
  if (!webhook || dialog.dataset.busy === 'true') return;
  setBusy(dialog, true);
  try {
    await api('DELETE', `/api/webhooks/${enc(webhook.id)}`);
  } catch (error) {
    setBusy(dialog, false);
    if (error instanceof ApiError && error.status === 404) {
      // Already gone: the outcome the user asked for.
    } else {
      reportError(error);
      return;
    }
  }
  dropPanel(webhook.id);
  dialog.openerKey = null;
  dialog.opener = $('add-webhook');
  setBusy(dialog, false);
  closeModal(dialog);
  toast('Webhook deleted.');
  after.deleted(webhook);
}

/** Wires both modals; `saved()` runs after an add or an edit, `deleted()` after a delete. */
export function wireWebhookForms({ saved, deleted }) {
  after.saved = saved;
  after.deleted = deleted;
  const modal = $('webhook-modal');
  $('webhook-form').addEventListener('submit', onWebhookSubmit);
  $('wh-back').addEventListener('click', () => goToStep(1, true));
  guardModal(modal, cleanWebhookModal);
  $('wh-events-search').addEventListener('input', (e) => filterChecklist($('wh-events'), e.target.value));
  for (const [input, error] of FIELD_INPUTS) {
    if (input === 'wh-events-field') continue;
    $(input).addEventListener('input', () => clearFieldError(input, error));
  }
  $('wh-ca').addEventListener('input', updateSectionPills);
  $('wh-proxy').addEventListener('input', updateSectionPills);
  $('wh-ca-file').addEventListener('change', onCaFile);

  // Delete modal.
  const del = $('delete-modal');
  $('delete-form').addEventListener('submit', onDeleteSubmit);
  guardModal(del, () => {
    removal.webhook = null;
  });
}
