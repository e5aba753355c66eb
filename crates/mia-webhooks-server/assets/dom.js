// Small DOM helpers, the banner, the toast and field errors. Text goes in with textContent only.

import { ApiError, NetworkError } from './api.js';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** Dates and times in the reader's locale and time zone. */
export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** A new element with a class and text (never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/** A new type=button button; `key` lets keepFocus find it again after a re-render. */
export function button(text, className, key) {
  const b = el('button', `btn ${className || ''}`.trim(), text);
  b.type = 'button';
  if (key) b.dataset.key = key;
  return b;
}

/** A <time> element for an RFC 3339 timestamp. */
export function timeEl(iso) {
  const t = el('time');
  t.dateTime = iso;
  const date = new Date(iso);
  t.textContent = Number.isNaN(date.getTime()) ? iso : dateFormat.format(date);
  return t;
}

/** "850 ms", "1.2 s", "15 s". */
export function duration(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 0 : 1)} s`;
  return `${ms} ms`;
}

/** "1 attempt", "3 attempts". */
export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// Re-renders with `render` and puts the focus back on the element with the same data-key.
export function keepFocus(render) {
  const active = document.activeElement;
  const key = active && active.dataset ? active.dataset.key : null;
  render();
  if (key && (!document.activeElement || document.activeElement === document.body || !document.activeElement.isConnected)) {
    const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// ---------------------------------------------------------------- banner and toast

let bannerRetry = null;

/** Shows the banner (role=alert) with a Retry button when `retry` is given. */
export function showBanner(message, retry) {
  $('banner-text').textContent = message;
  bannerRetry = retry || null;
  $('banner-retry').hidden = !retry;
  $('banner').hidden = false;
}

/** Hides the banner. */
export function hideBanner() {
  $('banner').hidden = true;
  bannerRetry = null;
}

let toastTimer = null;

/** A short confirmation (role=status) that goes away by itself. */
export function toast(message) {
  const t = $('toast');
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, 4000);
}

// Shows an error that concerns no form field: inside the open modal if there is one (the
// modal hides the rest of the page), else as the banner.
export function reportError(error, retry) {
  if (error instanceof ApiError && error.status === 401) return;
  const message = error instanceof NetworkError || error instanceof ApiError ? error.message : 'Something went wrong.';
  const open = document.querySelector('dialog[open]');
  if (open) {
    const formError = open.querySelector('.form-error');
    if (formError) {
      formError.textContent = message;
      formError.hidden = false;
    }
  }
  if (error instanceof NetworkError || !open) showBanner(message, retry);
}

// ---------------------------------------------------------------- field errors

export function setFieldError(inputId, errorId, message) {
  const input = $(inputId);
  const error = $(errorId);
  error.textContent = message;
  error.hidden = false;
  input.setAttribute('aria-invalid', 'true');
}

/** Removes the error of a field. */
export function clearFieldError(inputId, errorId) {
  const input = $(inputId);
  const error = $(errorId);
  error.textContent = '';
  error.hidden = true;
  input.removeAttribute('aria-invalid');
}

/** The banner's buttons: Retry runs what failed, Dismiss hides it. */
export function wireBanner() {
  $('banner-close').addEventListener('click', hideBanner);
  $('banner-retry').addEventListener('click', () => {
    const retry = bannerRetry;
    hideBanner();
    if (retry) retry();
  });
}
