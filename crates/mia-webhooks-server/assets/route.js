// Scopes in the URL (`#/`, `#/companies/acme`, `#/companies/acme/projects/payments`, each with
// an optional `?events=a,b`), and what the signed-in token reaches.

import { enc } from './api.js';

/**
 * The route of the URL. `explicit` is false when the URL names no scope (no hash, `#` or
 * `#/`): the page then opens the scope of the token.
 */
export function parseHash(hashText) {
  let hash = hashText.replace(/^#/, '');
  let query = '';
  const q = hash.indexOf('?');
  if (q >= 0) {
    query = hash.slice(q + 1);
    hash = hash.slice(0, q);
  }
  const decode = (s) => {
    try {
      return decodeURIComponent(s);
    } catch (_) {
      return s;
    }
  };
  const parts = hash.split('/').filter(Boolean).map(decode);
  const route = { kind: 'instance', tenant: '', project: '', events: [], explicit: parts.length > 0 };
  if (parts[0] === 'companies' && parts[1]) {
    route.kind = 'company';
    route.tenant = parts[1];
    if (parts[2] === 'projects' && parts[3]) {
      route.kind = 'project';
      route.project = parts[3];
    }
  }
  for (const pair of query.split('&')) {
    const [key, value = ''] = pair.split('=');
    if (key === 'events') {
      route.events = value.split(',').map(decode).map((s) => s.trim()).filter(Boolean);
    }
  }
  return route;
}

/** The URL hash of a route. */
export function hashFor(route) {
  let hash = '#/';
  if (route.kind === 'company' || route.kind === 'project') {
    hash += `companies/${enc(route.tenant)}`;
    if (route.kind === 'project') hash += `/projects/${enc(route.project)}`;
  }
  if (route.events.length) hash += `?events=${route.events.map(enc).join(',')}`;
  return hash;
}

/** "the Console instance", "company acme", "project payments of company acme". */
export function scopeLabel(route) {
  if (route.kind === 'project') return `project ${route.project} of company ${route.tenant}`;
  if (route.kind === 'company') return `company ${route.tenant}`;
  return 'the Console instance';
}

/** The sentence under the title: what the webhooks of this scope receive. */
export function scopeSummary(route) {
  if (route.kind === 'project') {
    return `Installed on project ${route.project} of company ${route.tenant}: these webhooks receive the events of this project.`;
  }
  if (route.kind === 'company') {
    return `Installed on company ${route.tenant}: these webhooks receive the events of this company and of its projects.`;
  }
  return 'Installed on the Console instance: these webhooks receive every event they subscribe to.';
}

/** The scope a token manages (its widest), as a route; null for a token that manages none. */
export function ownRoute(me) {
  const route = { kind: 'instance', tenant: '', project: '', events: [], explicit: true };
  if (!me || !me.canManageWebhooks) return null;
  if (me.role === 'companyAdmin') return { ...route, kind: 'company', tenant: me.tenantId };
  if (me.role === 'projectAdmin') return { ...route, kind: 'project', tenant: me.tenantId, project: me.projectId };
  return route;
}

/** Whether a token manages the webhooks of `route` (the server decides; this only guides). */
export function reaches(me, route) {
  const own = ownRoute(me);
  if (!own) return false;
  if (own.kind === 'instance') return true;
  if (route.kind === 'instance' || route.tenant !== own.tenant) return false;
  return own.kind === 'company' || (route.kind === 'project' && route.project === own.project);
}

/** "Instance admin", "Company admin of acme", "Project admin of acme / payments", "Emitter". */
export function roleLabel(me) {
  if (me.role === 'instanceAdmin') return 'Instance admin';
  if (me.role === 'companyAdmin') return `Company admin of ${me.tenantId}`;
  if (me.role === 'projectAdmin') return `Project admin of ${me.tenantId} / ${me.projectId}`;
  return 'Emitter';
}
