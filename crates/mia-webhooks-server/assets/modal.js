// Modal dialogs: native <dialog> opened with showModal (the rest of the page is inert), Tab and
// Shift+Tab cycle through the dialog's controls (the browser alone would move on to its own
// toolbar), Escape closes, and the focus goes back to the element that opened it.

import { $ } from './dom.js';

// Opens `dialog` as a modal; `opener` gets the focus back when it closes (or, when a
// re-render replaced it, the element with the same data-key).
export function openModal(dialog, opener) {
  dialog.openerKey = opener && opener.dataset ? opener.dataset.key || null : null;
  dialog.opener = opener || null;
  dialog.showModal();
}

// Closes `dialog` at once: its cleanup runs and the focus goes back before this returns.
export function closeModal(dialog) {
  if (dialog.cleanup) dialog.cleanup();
  if (dialog.open) dialog.close();
  restoreFocus(dialog);
}

// The controls of `dialog` that Tab reaches, in order: shown, enabled, not taken out of the
// tab order, and not inside a closed <details> (except its summary).
function tabbables(dialog) {
  const selector = 'a[href], button, input, select, textarea, summary, [tabindex]';
  return [...dialog.querySelectorAll(selector)].filter((e) => {
    if (e.disabled || e.tabIndex < 0 || e.closest('[hidden]')) return false;
    const details = e.closest('details');
    if (details && !details.open && !(e.tagName === 'SUMMARY' && e.parentElement === details)) return false;
    // Visually hidden inputs (the CA file input) stay reachable; those not rendered do not.
    return e.getClientRects().length > 0;
  });
}

// Keeps Tab inside the dialog: past the last control it goes to the first, and back.
function trapFocus(dialog) {
  dialog.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab' || e.altKey || e.ctrlKey || e.metaKey) return;
    const items = tabbables(dialog);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    const inside = dialog.contains(document.activeElement);
    if (e.shiftKey && (document.activeElement === first || !inside)) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (document.activeElement === last || !inside)) {
      e.preventDefault();
      first.focus();
    }
  });
}

// Escape: close through closeModal unless a request is in flight. Should the browser close
// the dialog without a cancel event (it may, on a second Escape), the close event cleans up.
export function guardModal(dialog, cleanup) {
  dialog.cleanup = cleanup;
  trapFocus(dialog);
  dialog.addEventListener('cancel', (e) => {
    e.preventDefault();
    if (dialog.dataset.busy !== 'true') closeModal(dialog);
  });
  dialog.addEventListener('close', () => {
    cleanup();
    if (dialog.opener || dialog.openerKey) restoreFocus(dialog);
  });
}

// Gives the focus back to the opener, or to the element that replaced it, or to the title.
export function restoreFocus(dialog) {
  const opener = dialog.opener;
  let target = opener && opener.isConnected ? opener : null;
  if (!target && dialog.openerKey) target = document.querySelector(`[data-key="${CSS.escape(dialog.openerKey)}"]`);
  if (!target || target.closest('[hidden]')) target = $('page-title');
  target.focus();
  dialog.opener = null;
  dialog.openerKey = null;
}

// While a request is in flight, the submit buttons are disabled and Escape does nothing.
export function setBusy(dialog, busy) {
  dialog.dataset.busy = busy ? 'true' : '';
  dialog.setAttribute('aria-busy', String(busy));
  for (const b of dialog.querySelectorAll('button[type="submit"]')) b.disabled = busy;
}

/** Closes every open modal without giving the focus back (signing out). */
export function closeAllModals() {
  for (const dialog of document.querySelectorAll('dialog[open]')) {
    dialog.opener = null;
    dialog.openerKey = null;
    if (dialog.cleanup) dialog.cleanup();
    dialog.close();
  }
}

/** Buttons marked data-close close their dialog. */
export function wireCloseButtons() {
  for (const closer of document.querySelectorAll('dialog [data-close]')) {
    closer.addEventListener('click', () => {
      const dialog = closer.closest('dialog');
      if (dialog.dataset.busy !== 'true') closeModal(dialog);
    });
  }
}
