// mia-webhooks admin page: plain JavaScript modules, no framework, no build step.
//
// The page talks only to this server's REST API with a bearer token kept in sessionStorage.
// Data from the API is put in the page with textContent and DOM methods, never as HTML.
// Webhook secrets are write-only: the page reads the secret input once, at submit, sends it,
// and clears the input; it never stores or shows a secret.
//
// This module: sign in, the scope picker and the URL, the event filter, the webhooks table.

import { ApiError, NetworkError, api, enc, onUnauthorized, scopeApiPath } from './api.js';
import { SEARCH_THRESHOLD, buildChecklist, catalogEntries, checkedValues, filterChecklist } from './checklist.js';
import { closePanels, deliveriesRow, loadDeliveries, redeliver, sendTestEvent, toggleAttempts, toggleDeliveries } from './deliveries.js';
import {
  $, button, clearFieldError, el, hideBanner, keepFocus, plural, reportError, setFieldError, showBanner, wireBanner,
} from './dom.js';
import { closeAllModals, wireCloseButtons } from './modal.js';
import { hashFor, ownRoute, parseHash, reaches, roleLabel, scopeLabel, scopeSummary } from './route.js';
import { state } from './state.js';
import { openDeleteModal, openWebhookModal, wireWebhookForms } from './webhook-form.js';

const TOKEN_KEY = 'mia-webhooks.token';
const PAGE_SIZE = 25;
const TAGS_SHOWN = 4;

// ---------------------------------------------------------------- routing

function navigate(route) {
  const hash = hashFor(route);
  if (location.hash === hash) {
    onRoute();
  } else {
    location.hash = hash;
  }
}

// ---------------------------------------------------------------- sign in / out

/** Shown, instead of the webhooks, to a token that manages none. */
const EMITTER_MESSAGE =
  'This is an emitter token: it may post events, but it cannot manage webhooks. ' +
  'Sign in with the token of an instance, company or project admin.';

function showSignIn(message) {
  $('app-view').hidden = true;
  $('sign-out').hidden = true;
  $('whoami').hidden = true;
  $('signin-view').hidden = false;
  if (message) setFieldError('signin-token', 'signin-token-error', message);
  document.title = 'Sign in · mia-webhooks';
  $('signin-token').focus();
}

// What the token is, then the catalogue (which only tokens that manage webhooks may read).
// Resolves to an error message for the sign-in form when the token cannot use this page.
async function loadSession(options) {
  const me = await api('GET', '/api/me', undefined, options);
  if (!me || !me.canManageWebhooks) return EMITTER_MESSAGE;
  const catalog = await api('GET', '/api/events/catalog', undefined, options);
  state.me = me;
  state.catalog = catalog.events || [];
  return null;
}

async function onSignIn(event) {
  event.preventDefault();
  const input = $('signin-token');
  const token = input.value.trim();
  clearFieldError('signin-token', 'signin-token-error');
  if (!token) {
    setFieldError('signin-token', 'signin-token-error', 'Enter an API token.');
    input.focus();
    return;
  }
  const submit = $('signin-submit');
  submit.disabled = true;
  state.token = token;
  try {
    const refused = await loadSession({ signingIn: true });
    if (refused) {
      // Not kept: the page can do nothing with it.
      state.token = null;
      input.value = '';
      setFieldError('signin-token', 'signin-token-error', refused);
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = '';
    hideBanner();
    enterApp();
  } catch (error) {
    state.token = null;
    state.me = null;
    if (error instanceof ApiError && error.status === 401) {
      setFieldError('signin-token', 'signin-token-error', 'This token is not valid.');
    } else if (error instanceof NetworkError) {
      setFieldError('signin-token', 'signin-token-error', error.message);
      showBanner(error.message);
    } else {
      setFieldError('signin-token', 'signin-token-error', error.message);
    }
    input.focus();
  } finally {
    submit.disabled = false;
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  state.catalog = null;
  state.webhooks = [];
  state.nextCursor = null;
  state.listGeneration += 1;
  state.route = { kind: 'instance', tenant: '', project: '', events: [] };
  closePanels();
  $('webhooks-body').replaceChildren();
  closeAllModals();
  hideBanner();
  showSignIn(message);
}

async function enterApp() {
  $('signin-view').hidden = true;
  $('app-view').hidden = false;
  $('sign-out').hidden = false;
  if (!state.me || !state.catalog) {
    // A token kept from earlier in this tab.
    try {
      const refused = await loadSession();
      if (refused) {
        signOut(refused);
        return;
      }
    } catch (error) {
      reportError(error, enterApp);
      return;
    }
  }
  const who = $('whoami');
  who.textContent = roleLabel(state.me);
  who.hidden = false;
  limitScopeKinds();
  onRoute();
  $('page-title').focus();
}

// ---------------------------------------------------------------- scope picker

// The kinds of scope the token can reach stay choosable; the others are disabled.
function limitScopeKinds() {
  const own = ownRoute(state.me);
  const reachable = {
    instance: own.kind === 'instance',
    company: own.kind !== 'project',
    project: true,
  };
  for (const option of $('scope-kind').options) option.disabled = !reachable[option.value];
}

function syncScopeForm(route) {
  $('scope-kind').value = route.kind;
  $('scope-tenant').value = route.tenant;
  $('scope-project').value = route.project;
  showScopeFields();
}

function showScopeFields() {
  const kind = $('scope-kind').value;
  $('scope-tenant-field').hidden = kind === 'instance';
  $('scope-project-field').hidden = kind !== 'project';
}

function onScopeSubmit(event) {
  event.preventDefault();
  const kind = $('scope-kind').value;
  const tenant = $('scope-tenant').value.trim();
  const project = $('scope-project').value.trim();
  clearFieldError('scope-tenant', 'scope-tenant-error');
  clearFieldError('scope-project', 'scope-project-error');
  let invalid = null;
  if (kind !== 'instance' && !tenant) {
    setFieldError('scope-tenant', 'scope-tenant-error', 'Enter a company ID.');
    invalid = invalid || $('scope-tenant');
  }
  if (kind === 'project' && !project) {
    setFieldError('scope-project', 'scope-project-error', 'Enter a project ID.');
    invalid = invalid || $('scope-project');
  }
  if (invalid) {
    invalid.focus();
    return;
  }
  navigate({ kind, tenant, project, events: state.route.events });
}

// ---------------------------------------------------------------- route -> page

// "Add webhook" is offered only where the token may add one.
function setCanAdd(can) {
  $('add-webhook').hidden = !can;
}

function onRoute() {
  if (!state.token || !state.me || !state.catalog) return;
  let route = parseHash(location.hash);
  if (!route.explicit) {
    // No scope in the URL: the token's own, written in the URL (without a history entry) so
    // that the page can be bookmarked.
    route = { ...ownRoute(state.me), events: route.events };
    history.replaceState(null, '', hashFor(route));
  }
  const scopeChanged =
    route.kind !== state.route.kind || route.tenant !== state.route.tenant || route.project !== state.route.project;
  state.route = route;
  if (scopeChanged) closePanels();
  syncScopeForm(route);
  setCanAdd(reaches(state.me, route));
  $('scope-summary').textContent = scopeSummary(route);
  document.title = `Webhooks · ${route.kind === 'instance' ? 'instance' : route.kind === 'company' ? route.tenant : `${route.tenant} / ${route.project}`} · mia-webhooks`;
  renderFilter();
  loadWebhooks(false);
}

// ---------------------------------------------------------------- event filter

function renderFilter() {
  const active = new Set(state.route.events);
  const entries = catalogEntries(state.route.events);
  buildChecklist($('filter-options'), entries, active, 'filter-event');
  $('filter-search').value = '';
  $('filter-search').hidden = entries.length <= SEARCH_THRESHOLD;
  const count = $('filter-count');
  count.textContent = String(active.size);
  count.hidden = active.size === 0;
  $('filter-summary').setAttribute(
    'aria-label',
    active.size ? `Filter by events, ${plural(active.size, 'event', 'events')} chosen` : 'Filter by events',
  );
  const chips = $('filter-chips');
  chips.replaceChildren();
  for (const name of state.route.events) {
    const li = el('li', 'chip');
    li.append(el('span', null, name));
    const remove = el('button', null, '×');
    remove.type = 'button';
    remove.dataset.key = `chip:${name}`;
    remove.setAttribute('aria-label', `Remove ${name} from the filter`);
    remove.addEventListener('click', () => {
      navigate({ ...state.route, events: state.route.events.filter((n) => n !== name) });
      $('filter-summary').focus();
    });
    li.append(remove);
    chips.append(li);
  }
  if (state.route.events.length) {
    const li = el('li');
    const clear = button('Clear filter', 'btn-small btn-ghost', 'chip-clear');
    clear.addEventListener('click', () => {
      navigate({ ...state.route, events: [] });
      $('filter-summary').focus();
    });
    li.append(clear);
    chips.append(li);
  }
}

function applyFilter(events) {
  $('filter').open = false;
  navigate({ ...state.route, events });
  $('filter-summary').focus();
}

// ---------------------------------------------------------------- webhooks table

async function loadWebhooks(append) {
  const generation = ++state.listGeneration;
  const route = state.route;
  const params = [`limit=${PAGE_SIZE}`];
  if (route.events.length) params.push(`events=${route.events.map(enc).join(',')}`);
  if (append && state.nextCursor) params.push(`cursor=${enc(state.nextCursor)}`);
  const table = $('webhooks-table');
  table.setAttribute('aria-busy', 'true');
  $('load-more').disabled = true;
  let page;
  try {
    page = await api('GET', `${scopeApiPath(route)}?${params.join('&')}`);
  } catch (error) {
    if (generation !== state.listGeneration) return;
    table.removeAttribute('aria-busy');
    $('load-more').disabled = false;
    if (error instanceof ApiError && (error.status === 404 || error.status === 403)) {
      state.webhooks = [];
      state.nextCursor = null;
      renderTable();
      // Nothing can be added where nothing can be read.
      setCanAdd(false);
      const own = ownRoute(state.me);
      showEmpty(
        'Cannot show these webhooks',
        error.status === 404 && state.me?.role !== 'instanceAdmin'
          ? `This token cannot manage webhooks of ${scopeLabel(route)}: it manages those of ${scopeLabel(own)}${own.kind === 'company' ? ' and of its projects' : ''}. Choose a scope inside it.`
          : error.message,
        'Show my webhooks',
      );
    } else if (error instanceof ApiError && error.field === 'events') {
      showBanner(`The event filter is not valid: ${error.message}`);
    } else {
      reportError(error, () => loadWebhooks(append));
    }
    return;
  }
  if (generation !== state.listGeneration) return;
  table.removeAttribute('aria-busy');
  $('load-more').disabled = false;
  setCanAdd(true);
  if (!$('banner-retry').hidden) hideBanner();
  const items = page.items || [];
  state.webhooks = append ? state.webhooks.concat(items) : items;
  state.nextCursor = page.nextCursor || null;
  keepFocus(renderTable);
  $('list-status').textContent = state.webhooks.length
    ? `${plural(state.webhooks.length, 'webhook', 'webhooks')} shown.`
    : 'No webhooks.';
  for (const id of state.panels.keys()) {
    if (state.webhooks.some((w) => w.id === id)) loadDeliveries(id, false);
    else state.panels.delete(id);
  }
}

function showEmpty(title, text, action) {
  $('empty-title').textContent = title;
  $('empty-text').textContent = text;
  const b = $('empty-add');
  b.hidden = !action;
  if (action) b.textContent = action;
  b.dataset.mode = { 'Clear filter': 'clear', 'Show my webhooks': 'home' }[action] || 'add';
  $('empty-state').hidden = false;
  $('webhooks-table').parentElement.hidden = true;
}

function renderTable() {
  const body = $('webhooks-body');
  body.replaceChildren();
  for (const webhook of state.webhooks) {
    body.append(webhookRow(webhook));
    if (state.panels.has(webhook.id)) body.append(deliveriesRow(webhook));
  }
  $('load-more').hidden = !state.nextCursor;
  if (state.webhooks.length) {
    $('empty-state').hidden = true;
    $('webhooks-table').parentElement.hidden = false;
  } else if (state.route.events.length) {
    showEmpty(
      'No webhook matches the filter',
      `No webhook of ${scopeLabel(state.route)} subscribes to ${state.route.events.join(', ')}. Clear the filter to see them all.`,
      'Clear filter',
    );
  } else {
    showEmpty(
      'No webhooks yet',
      `Add a webhook to receive a signed HTTP POST each time an event it subscribes to happens in ${scopeLabel(state.route)}.`,
      'Add webhook',
    );
  }
}

function webhookRow(webhook) {
  const row = $('row-template').content.firstElementChild.cloneNode(true);
  row.dataset.id = webhook.id;
  row.querySelector('.url').textContent = webhook.targetUrl;
  const desc = row.querySelector('.desc');
  desc.textContent = webhook.description || '';
  desc.hidden = !webhook.description;
  const meta = row.querySelector('.meta');
  if (webhook.caCertificate) meta.append(el('span', 'pill', 'Custom CA'));
  if (webhook.proxy && webhook.proxy.url) {
    const pill = el('span', 'pill', 'Proxy');
    pill.title = webhook.proxy.url;
    meta.append(pill);
  }
  meta.hidden = !meta.childElementCount;

  const tags = row.querySelector('.tags');
  const events = webhook.events || [];
  events.slice(0, TAGS_SHOWN).forEach((name) => {
    tags.append(el('li', 'tag', name));
  });
  if (events.length > TAGS_SHOWN) {
    const more = el('li', 'pill', `+${events.length - TAGS_SHOWN} more`);
    more.title = events.slice(TAGS_SHOWN).join(', ');
    tags.append(more);
  }

  const status = row.querySelector('.cell-status');
  const badge = el('span', `status ${webhook.enabled ? 'status-enabled' : 'status-disabled'}`, webhook.enabled ? 'Enabled' : 'Disabled');
  status.append(badge);
  if (!webhook.enabled) {
    status.append(el('span', 'status-reason', webhook.disabledReason || 'Disabled by an admin.'));
  }

  const label = webhook.targetUrl;
  const deliveries = row.querySelector('[data-action="deliveries"]');
  deliveries.dataset.key = `deliveries:${webhook.id}`;
  deliveries.setAttribute('aria-label', `Deliveries of ${label}`);
  deliveries.setAttribute('aria-expanded', String(state.panels.has(webhook.id)));
  deliveries.setAttribute('aria-controls', `deliveries-${webhook.id}`);
  if (state.panels.has(webhook.id)) row.classList.add('expanded');
  const edit = row.querySelector('[data-action="edit"]');
  edit.dataset.key = `edit:${webhook.id}`;
  edit.setAttribute('aria-label', `Edit ${label}`);
  const del = row.querySelector('[data-action="delete"]');
  del.dataset.key = `delete:${webhook.id}`;
  del.setAttribute('aria-label', `Delete ${label}`);
  return row;
}

// Reads one webhook again and re-renders the table if its status changed (the server disables
// a webhook whose receiver answered 410 Gone, or that failed for too long).
async function refreshWebhook(id) {
  const generation = state.listGeneration;
  let fresh;
  try {
    fresh = await api('GET', `/api/webhooks/${enc(id)}`);
  } catch (_) {
    // The deliveries panel reports its own errors; the table stays as it was.
    return;
  }
  if (generation !== state.listGeneration) return;
  const i = state.webhooks.findIndex((w) => w.id === id);
  if (i < 0) return;
  const old = state.webhooks[i];
  if (old.enabled === fresh.enabled && old.disabledReason === fresh.disabledReason) return;
  state.webhooks[i] = fresh;
  keepFocus(renderTable);
}

function onTableClick(event) {
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  const row = target.closest('tr');
  const id = row.dataset.id || row.dataset.webhook;
  const webhook = state.webhooks.find((w) => w.id === id);
  if (!webhook) return;
  switch (target.dataset.action) {
    case 'deliveries':
      toggleDeliveries(webhook);
      break;
    case 'edit':
      openWebhookModal('edit', webhook, target);
      break;
    case 'delete':
      openDeleteModal(webhook, target);
      break;
    case 'refresh':
      loadDeliveries(webhook.id, false, true);
      refreshWebhook(webhook.id);
      break;
    case 'test':
      sendTestEvent(webhook, target);
      break;
    case 'more-deliveries':
      loadDeliveries(webhook.id, true, true);
      break;
    case 'attempts':
      toggleAttempts(webhook.id, target.dataset.delivery);
      break;
    case 'redeliver':
      redeliver(webhook.id, target.dataset.delivery, target);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('signin-form').addEventListener('submit', onSignIn);
  $('signin-token').addEventListener('input', () => clearFieldError('signin-token', 'signin-token-error'));
  $('sign-out').addEventListener('click', () => signOut());
  wireBanner();

  $('scope-form').addEventListener('submit', onScopeSubmit);
  $('scope-kind').addEventListener('change', showScopeFields);
  for (const id of ['scope-tenant', 'scope-project']) {
    $(id).addEventListener('input', () => clearFieldError(id, `${id}-error`));
  }

  $('add-webhook').addEventListener('click', (e) => openWebhookModal('create', null, e.currentTarget));
  $('empty-add').addEventListener('click', (e) => {
    const mode = e.currentTarget.dataset.mode;
    if (mode === 'clear') {
      navigate({ ...state.route, events: [] });
      $('filter-summary').focus();
    } else if (mode === 'home') {
      navigate({ ...ownRoute(state.me), events: state.route.events });
      $('page-title').focus();
    } else {
      openWebhookModal('create', null, $('add-webhook'));
    }
  });
  $('load-more').addEventListener('click', () => loadWebhooks(true));
  $('webhooks-body').addEventListener('click', onTableClick);

  // Filter popover.
  const filter = $('filter');
  $('filter-apply').addEventListener('click', () => applyFilter(checkedValues($('filter-options'))));
  $('filter-clear').addEventListener('click', () => applyFilter([]));
  $('filter-search').addEventListener('input', (e) => filterChecklist($('filter-options'), e.target.value));
  filter.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && filter.open) {
      e.preventDefault();
      filter.open = false;
      $('filter-summary').focus();
    }
  });
  filter.addEventListener('toggle', () => {
    if (filter.open) {
      renderFilter();
      const first = $('filter-options').querySelector('input');
      if (first) first.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (filter.open && !filter.contains(e.target)) filter.open = false;
  });

  // The modals.
  wireWebhookForms({
    saved: () => loadWebhooks(false),
    deleted: (webhook) => {
      state.webhooks = state.webhooks.filter((w) => w.id !== webhook.id);
      renderTable();
      loadWebhooks(false);
    },
  });
  wireCloseButtons();

  window.addEventListener('hashchange', onRoute);
  document.addEventListener('deliveries-settled', (e) => refreshWebhook(e.detail.id));
}

function boot() {
  wire();
  onUnauthorized(signOut);
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (state.token) enterApp();
  else showSignIn();
}

// Module scripts run after the document is parsed.
boot();
