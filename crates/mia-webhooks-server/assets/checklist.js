// Multi-selects of events: one labelled checkbox per event of the catalogue, with a search.

import { state } from './state.js';
import { el } from './dom.js';

/** Above this many events, a search box narrows the list. */
export const SEARCH_THRESHOLD = 10;

export function catalogEntries(extra) {
  const entries = (state.catalog || []).map((e) => ({ name: e.name, summary: e.summary || '' }));
  const known = new Set(entries.map((e) => e.name));
  for (const name of extra || []) {
    if (!known.has(name)) {
      entries.push({ name, summary: 'Not in the catalogue of this server.' });
      known.add(name);
    }
  }
  return entries;
}

// Fills `container` with one labelled checkbox per event.
export function buildChecklist(container, entries, checked, prefix, onChange) {
  container.replaceChildren();
  entries.forEach((entry, i) => {
    const id = `${prefix}-${i}`;
    const label = el('label', 'check');
    label.htmlFor = id;
    const box = el('input');
    box.type = 'checkbox';
    box.id = id;
    box.value = entry.name;
    box.checked = checked.has(entry.name);
    if (onChange) box.addEventListener('change', onChange);
    label.append(box, el('span', 'check-name', entry.name));
    if (entry.summary) label.append(el('span', 'check-summary', entry.summary));
    label.dataset.search = `${entry.name} ${entry.summary}`.toLowerCase();
    container.append(label);
  });
  const none = el('p', 'checklist-empty', 'No event matches the search.');
  none.hidden = true;
  none.dataset.role = 'none';
  container.append(none);
}

export function filterChecklist(container, query) {
  const q = query.trim().toLowerCase();
  let shown = 0;
  for (const label of container.querySelectorAll('.check')) {
    const match = !q || label.dataset.search.includes(q);
    label.hidden = !match;
    if (match) shown += 1;
  }
  container.querySelector('[data-role="none"]').hidden = shown > 0;
}

export function checkedValues(container) {
  return [...container.querySelectorAll('input[type="checkbox"]:checked')].map((b) => b.value);
}
