/* The review page's state, the vocabularies from GET /api/meta, and the small DOM updates that
   follow a state change (selection counter, empty note, focus, a card's error and busy marks). */

import { $, $$, h, label } from '../lib/dom.js';
import { api } from '../lib/api.js';

/* Each view keeps its own cards, so what was typed into a review card survives a look at
   the failed uploads. */
export const VIEWS = {
  review: { status: 'in_review', label: 'Items in review', empty: 'Nothing waiting for review.',
    cards: new Map(), items: new Map() },
  failed: { status: 'upload_failed', label: 'Failed uploads', empty: 'No failed uploads.',
    cards: new Map(), items: new Map() },
};

export const state = {
  view: 'review',
  cards: VIEWS.review.cards, // id -> card element (of the current view)
  items: VIEWS.review.items, // id -> item JSON (of the current view)
  selected: new Set(), // review view only
  cursor: null,
  current: null, // id of the card that had the focus last
  loading: false,
  loadSeq: 0, // a load started before a view switch is dropped when it answers
  loadedOnce: false, // the first answer focuses the first card (keys work without a click)
};

/* The server's vocabularies (GET /api/meta): the page keeps no list of its own. */
export const meta = { vaults: [], crop_modes: [], statuses: [], flags: [] };

export const grid = $('#grid');
export const fCreator = $('#f-creator');
export const fFlag = $('#f-flag');

let metaLoading = null;

/* Loads /api/meta once (again after a failure) and fills the page's static controls from it. */
export function loadMeta() {
  if (!metaLoading) {
    metaLoading = api('GET', '/api/meta').then((data) => {
      Object.assign(meta, data || {});
      fillVocabularies();
      return meta;
    }, (e) => {
      metaLoading = null;
      throw e;
    });
  }
  return metaLoading;
}

function fillVocabularies() {
  $('#bulk-vault').replaceChildren(...meta.vaults.map((v) => h('option', { value: v }, v)));
  fFlag.replaceChildren(h('option', { value: '' }, 'any'), ...meta.flags.map((f) => h('option', { value: f }, label(f))));
  $('#vault-keys').textContent = 'vault ' + meta.vaults.slice(0, 9).join(' / ');
  $('#vault-key-names').textContent = meta.vaults.slice(0, 9).map((_, i) => String(i + 1)).join(' ');
}

/* The vault the number key `k` ('1'…'9') picks, or undefined. */
export const vaultForKey = (k) => (/^[1-9]$/.test(k) ? meta.vaults[Number(k) - 1] : undefined);

export const cardOf = (el) => (el && el.closest ? el.closest('.card') : null);
export const idOf = (card) => card.dataset.id;
export const cardsInGrid = () => $$('.card', grid);

export function showError(card, message) {
  const p = $('.error', card);
  p.textContent = message;
  p.hidden = !message;
}

export function setBusy(card, busy) {
  card.classList.toggle('busy', busy);
  card.setAttribute('aria-busy', busy ? 'true' : 'false');
  for (const b of $$('button', card)) b.disabled = busy || card.classList.contains('stale');
}

export function notice(text) {
  $('#notice').textContent = text;
}

export function focusCard(card) {
  if (!card) return;
  card.focus({ preventScroll: true });
  card.scrollIntoView({ block: 'nearest', inline: 'nearest' });
}

export function updateEmpty() {
  $('#empty').hidden = state.cards.size > 0 || state.loading;
}

export function updateSelection() {
  const n = state.selected.size;
  $('#sel-count').textContent = n + ' selected';
  $('#bulk-approve').disabled = n === 0;
  $('#bulk-reject').disabled = n === 0;
  const all = $('#select-all');
  all.checked = n > 0 && n === state.cards.size;
  all.indeterminate = n > 0 && n < state.cards.size;
  $('#bulk').classList.toggle('active', n > 0);
}

export function forget(id) {
  state.cards.delete(id);
  state.items.delete(id);
  state.selected.delete(id);
}

/* A decided / re-cropped card leaves the grid; the focus goes to the card that takes its place. */
export function removeCard(card) {
  const list = cardsInGrid();
  const i = list.indexOf(card);
  const hadFocus = card.contains(document.activeElement) || state.current === idOf(card);
  forget(idOf(card));
  card.remove();
  const rest = cardsInGrid();
  if (hadFocus && rest.length) focusCard(rest[Math.min(i, rest.length - 1)]);
  updateEmpty();
  updateSelection();
}
