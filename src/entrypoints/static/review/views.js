/* Loading the cards of a view, the status line, and switching between the two views
   ("In review", "Failed uploads"). The URL says which view is open: /review or
   /review?view=failed (the shared navigation links there); the old #failed-uploads still opens
   the failed view and is rewritten to ?view=failed. */

import { $, $$, h, label } from '../lib/dom.js';
import { api } from '../lib/api.js';
import { makeCard, makeFailedCard } from './cards.js';
import {
  VIEWS, cardOf, cardsInGrid, fCreator, fFlag, focusCard, forget, grid, idOf, loadMeta, meta, notice, state,
  updateEmpty, updateSelection,
} from './state.js';

const PAGE_SIZE = 50;
const LEGACY_HASH = '#failed-uploads';

/* The view the URL asks for. */
export function viewFromUrl() {
  const asked = new URLSearchParams(window.location.search).get('view');
  if (asked && VIEWS[asked]) return asked;
  return window.location.hash === LEGACY_HASH ? 'failed' : 'review';
}

/* The URL of the current page showing `name` (other query parameters kept). */
function urlFor(name) {
  const params = new URLSearchParams(window.location.search);
  if (name === 'review') params.delete('view');
  else params.set('view', name);
  const query = params.toString();
  const hash = window.location.hash === LEGACY_HASH ? '' : window.location.hash;
  return window.location.pathname + (query ? '?' + query : '') + hash;
}

export async function load({ append = false } = {}) {
  if (append && state.loading) return;
  const seq = ++state.loadSeq;
  const view = VIEWS[state.view];
  state.loading = true;
  const params = new URLSearchParams({ status: view.status, limit: String(PAGE_SIZE) });
  if (fCreator.value) params.set('creator', fCreator.value);
  if (fFlag.value && state.view === 'review') params.set('flag', fFlag.value);
  if (append && state.cursor) params.set('cursor', state.cursor);
  const make = state.view === 'failed' ? makeFailedCard : makeCard;
  try {
    await loadMeta(); // the cards' vault and crop-mode choices
    const data = await api('GET', '/api/content?' + params.toString());
    if (seq !== state.loadSeq) return; // the view or the filters changed meanwhile
    const items = (data && data.items) || [];
    const focusedId = cardOf(document.activeElement) ? idOf(cardOf(document.activeElement)) : null;
    // Keep the cards already on screen (and what was typed into them); add the new ones.
    const next = append ? cardsInGrid() : [];
    const keep = new Set(next.map(idOf));
    for (const item of items) {
      if (keep.has(item.id)) continue;
      keep.add(item.id);
      let card = state.cards.get(item.id);
      if (!card) {
        card = make(item);
        state.cards.set(item.id, card);
      }
      state.items.set(item.id, item);
      next.push(card);
    }
    for (const id of Array.from(state.cards.keys())) {
      if (!keep.has(id)) forget(id);
    }
    grid.replaceChildren(...next);
    state.cursor = (data && data.next_cursor) || null;
    $('#more').hidden = !state.cursor;
    if (focusedId && state.cards.has(focusedId)) focusCard(state.cards.get(focusedId));
    else if (nothingFocused()) focusCard(next[0]); // the keys work at once, without a click
    notice('');
  } catch (e) {
    if (seq !== state.loadSeq) return;
    notice('Could not load ' + (state.view === 'failed' ? 'the failed uploads: ' : 'the review queue: ') + e.message);
  } finally {
    if (seq === state.loadSeq) { // else a newer load owns the grid
      state.loading = false;
      grid.setAttribute('aria-busy', 'false');
      document.body.dataset.loaded = 'true';
      updateEmpty();
      updateSelection();
    }
  }
}

/* Nobody is working anywhere on the page (first load, or the focused element went away). */
const nothingFocused = () => !document.activeElement || document.activeElement === document.body;

export async function refreshStatus() {
  try {
    await loadMeta(); // the stages are listed in the server's pipeline order
    const data = await api('GET', '/api/status');
    const stages = (data && data.stages) || {};
    const order = meta.statuses;
    // Stages with nothing in them are left out, except the one this page is about.
    const names = Object.keys(stages).filter((n) => stages[n] > 0 || n === 'in_review').sort((a, b) => {
      const ia = order.indexOf(a), ib = order.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    const line = $('#stages');
    line.replaceChildren(...names.map((n) =>
      h('span', { className: 'stage stage-' + n.replace(/[^a-z_]/g, ''), dataset: { stage: n } },
        h('b', {}, String(stages[n])), ' ' + label(n))));
    if (names.length === 0) line.textContent = 'no content yet';
    showFailedCount(Number(stages.upload_failed) || 0);
    const creators = Array.from(new Set(((data && data.counts) || []).map((c) => c.creator))).sort();
    const have = new Set($$('option', fCreator).map((o) => o.value));
    for (const c of creators) if (!have.has(c)) fCreator.append(h('option', { value: c }, c));
  } catch (e) {
    $('#stages').textContent = 'status unavailable: ' + e.message;
  }
}

function showFailedCount(n) {
  const count = $('#failed-count');
  count.textContent = String(n);
  count.hidden = !(n > 0);
  const btn = $('#view-failed');
  btn.classList.toggle('has-failed', n > 0);
  btn.setAttribute('aria-label', n > 0 ? 'Failed uploads (' + n + ')' : 'Failed uploads');
}

/* Shows view `name`: its buttons, the shared navigation's current link and the URL follow. */
export function setView(name) {
  if (!VIEWS[name]) name = 'review';
  const view = VIEWS[name];
  const changed = name !== state.view;
  state.view = name;
  state.cards = view.cards;
  state.items = view.items;
  state.cursor = null;
  state.current = null;
  document.body.dataset.view = name;
  for (const b of $$('.view-btn')) b.setAttribute('aria-pressed', b.dataset.view === name ? 'true' : 'false');
  for (const a of $$('.site-nav a[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else if (VIEWS[a.dataset.nav]) a.removeAttribute('aria-current');
  }
  $('#bulk').hidden = name !== 'review';
  $('#flag-filter').hidden = name !== 'review';
  grid.setAttribute('aria-label', view.label);
  $('#empty').textContent = view.empty;
  const url = urlFor(name);
  if (url !== window.location.pathname + window.location.search + window.location.hash) {
    history.replaceState(null, '', url);
  }
  if (changed) {
    // Show this view's cards right away (kept from last time), then refresh them.
    grid.replaceChildren(...view.cards.values());
    $('#more').hidden = true;
    notice('');
    updateEmpty();
    updateSelection();
  }
}
