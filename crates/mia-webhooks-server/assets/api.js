// The REST API of this server, called with the bearer token of the session.

import { state } from './state.js';

let unauthorized = () => {};

/** Runs `handler(message)` when the server rejects the token (401), except while signing in. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** An error answered by the API: `{"error": {"code", "message", "field"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The server could not be reached. */
export class NetworkError extends Error {}

/** Calls the API; resolves to the JSON answer, rejects with ApiError or NetworkError. */
export async function api(method, path, body, options = {}) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${state.token}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  let text;
  try {
    response = await fetch(path, init);
    text = await response.text();
  } catch (_) {
    throw new NetworkError('The server cannot be reached. Check the connection, then retry.');
  }
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = null;
    }
  }
  if (!response.ok) {
    const detail = (data && data.error) || {};
    const error = new ApiError(
      response.status,
      detail.code || `http_${response.status}`,
      detail.message || `The server answered ${response.status}.`,
      detail.field || null,
    );
    if (response.status === 401 && !options.signingIn) {
      unauthorized('The server no longer accepts this token. Sign in again.');
    }
    throw error;
  }
  return data;
}

/** Encodes a path segment or query value. */
export const enc = encodeURIComponent;

/** The webhooks collection of a scope. */
export function scopeApiPath(route) {
  if (route.kind === 'project') {
    return `/api/companies/${enc(route.tenant)}/projects/${enc(route.project)}/webhooks`;
  }
  if (route.kind === 'company') return `/api/companies/${enc(route.tenant)}/webhooks`;
  return '/api/webhooks';
}
