/* What the operator does to a card or a selection: approve, reject, tags, re-crop, retry an
   upload, look at the original, pick a vault, bulk decisions. Each one calls the review API and
   updates the card; a 409/404 locks the card and shows what the item is now. */

import { $, label } from '../lib/dom.js';
import { api } from '../lib/api.js';
import { addStatusBadge, renderChips } from './cards.js';
import { LIMITS, centsToDollars, dollarsToCents, parseTags, sameOriginPath } from './format.js';
import {
  cardsInGrid, focusCard, idOf, notice, removeCard, setBusy, showError, state, updateSelection,
} from './state.js';
import { refreshStatus } from './views.js';

const idPath = (id) => '/api/content/' + encodeURIComponent(id);
const locked = (card) => card.classList.contains('busy') || card.classList.contains('stale');

/* After a 409/404 the item changed elsewhere: show what it is now and lock the card. */
async function markStale(card) {
  try {
    const item = await api('GET', idPath(idOf(card)));
    if (item && item.status === (card.dataset.expect || 'in_review')) return;
    card.classList.add('stale');
    addStatusBadge(card, item ? item.status : 'gone');
  } catch (e) {
    card.classList.add('stale');
  }
  setBusy(card, false);
}

function failed(card, e) {
  showError(card, (e.status ? e.status + ' — ' : '') + e.message);
  if (e.status === 409 || e.status === 404) markStale(card);
}

/* POST a decision for the card's item; on success the card leaves the grid with `message(item)`
   as the notice, on failure it shows the error (and locks after a 409/404). True when it went. */
async function decide(card, action, body, message) {
  setBusy(card, true);
  try {
    const item = await api('POST', idPath(idOf(card)) + '/' + action, body);
    notice(message(item, $('.name', card).textContent));
    removeCard(card);
    refreshStatus();
    return true;
  } catch (e) {
    setBusy(card, false);
    failed(card, e);
    return false;
  }
}

function decisionFields(card) {
  const body = { vault: $('.vault', card).value };
  const cents = dollarsToCents($('.price', card).value);
  if (Number.isNaN(cents)) return { error: 'Price must be dollars like 12 or 12.50', focus: '.price' };
  if (cents !== null) body.price_cents = cents;
  if (body.vault === 'ppv' && !(cents > 0)) return { error: 'A ppv item needs a price above $0', focus: '.price' };
  const category = $('.category', card).value.trim();
  if (category) body.category = category;
  const tags = parseTags($('.tags', card).value);
  if (tags.length > LIMITS.tags) return { error: 'At most ' + LIMITS.tags + ' tags', focus: '.tags' };
  if (tags.some((t) => t.length > LIMITS.tag)) return { error: 'A tag is longer than ' + LIMITS.tag + ' characters', focus: '.tags' };
  body.tags = tags;
  const description = $('.desc', card).value.trim();
  if (description) body.description = description;
  return { body };
}

export async function approve(card) {
  if (locked(card)) return;
  const { body, error, focus } = decisionFields(card);
  if (error) {
    showError(card, error);
    const el = $(focus, card);
    el.classList.add('invalid');
    el.focus();
    return;
  }
  showError(card, '');
  await decide(card, 'approve', body, (item, name) => {
    const price = item && item.price_cents ? ' $' + centsToDollars(item.price_cents) : '';
    return 'Approved ' + name + ' → ' + ((item && item.vault) || body.vault) + price;
  });
}

export function openReject(card) {
  if (locked(card)) return;
  const row = $('.reject-row', card);
  row.hidden = false;
  card.classList.add('rejecting');
  $('.reason', card).focus();
}

export function closeReject(card) {
  $('.reject-row', card).hidden = true;
  card.classList.remove('rejecting');
  focusCard(card);
}

export async function reject(card) {
  if (locked(card)) return;
  const reasonEl = $('.reason', card);
  const reason = reasonEl.value.trim();
  if (!reason) {
    showError(card, 'Type a reason to reject');
    reasonEl.classList.add('invalid');
    reasonEl.focus();
    return;
  }
  showError(card, '');
  if (!(await decide(card, 'reject', { reason }, (_, name) => 'Rejected ' + name + ': ' + reason))) reasonEl.focus();
}

export async function saveTags(card) {
  const tags = parseTags($('.tags', card).value);
  if (tags.length > LIMITS.tags || tags.some((t) => t.length > LIMITS.tag)) {
    showError(card, 'At most ' + LIMITS.tags + ' tags of up to ' + LIMITS.tag + ' characters');
    return;
  }
  setBusy(card, true);
  try {
    const item = await api('POST', idPath(idOf(card)) + '/tags', { tags });
    const saved = (item && item.tags) || tags;
    renderChips($('.chips', card), saved);
    $('.tags', card).value = saved.join(', ');
    showError(card, '');
    notice('Tags saved for ' + $('.name', card).textContent);
    focusCard(card);
  } catch (e) {
    failed(card, e);
  } finally {
    setBusy(card, false);
  }
}

export async function recrop(card) {
  if (locked(card)) return;
  const mode = $('.recrop-mode', card).value;
  await decide(card, 'recrop', { mode }, (_, name) => 'Re-crop requested (' + label(mode) + ') for ' + name);
}

export async function retryUpload(card) {
  if (locked(card)) return;
  showError(card, '');
  await decide(card, 'retry-upload', undefined,
    (_, name) => 'Upload retry requested for ' + name + ': it is back in the upload queue');
}

export function toggleOriginal(card) {
  const orig = $('.view-orig', card);
  const crop = $('.view-crop', card);
  const showOrig = orig.hidden;
  if (showOrig) {
    const img = $('.orig', card);
    const item = state.items.get(idOf(card)) || {};
    if (!img.getAttribute('src')) img.src = sameOriginPath((item.images || {}).original);
  }
  orig.hidden = !showOrig;
  crop.hidden = showOrig;
  const btn = $('.toggle', card);
  btn.textContent = showOrig ? 'Crop' : 'Original';
  btn.setAttribute('aria-pressed', showOrig ? 'true' : 'false');
  card.classList.toggle('showing-original', showOrig);
}

export function vaultChanged(card, vault) {
  card.dataset.vault = vault;
  $('.vault', card).classList.remove('invalid');
  if (vault !== 'ppv') {
    $('.price', card).classList.remove('invalid');
    showError(card, '');
  }
}

export function setVault(card, vault) {
  const sel = $('.vault', card);
  sel.value = vault;
  vaultChanged(card, vault);
  const price = $('.price', card);
  if (vault === 'ppv' && !(dollarsToCents(price.value) > 0)) {
    // ppv needs a price: go straight to it (Esc returns to the card).
    price.classList.add('invalid');
    price.focus();
    price.select();
  }
}

/* ------------------------------------------------------------------ selection / bulk */

export function setSelected(card, on) {
  const id = idOf(card);
  if (on) state.selected.add(id);
  else state.selected.delete(id);
  $('.pick', card).checked = on;
  card.classList.toggle('selected', on);
  updateSelection();
}

export async function bulk(action) {
  const ids = cardsInGrid().map(idOf).filter((id) => state.selected.has(id));
  if (!ids.length) return;
  const msg = $('#bulk-msg');
  const body = { ids, action };
  if (action === 'approve') {
    body.vault = $('#bulk-vault').value;
    const cents = dollarsToCents($('#bulk-price').value);
    if (Number.isNaN(cents)) return void (msg.textContent = 'Price must be dollars like 12 or 12.50');
    if (body.vault === 'ppv' && !(cents > 0)) return void (msg.textContent = 'ppv needs a price above $0');
    if (cents !== null) body.price_cents = cents;
  } else {
    const reason = $('#bulk-reason').value.trim();
    if (!reason) {
      msg.textContent = 'Type a reason to reject the selection';
      $('#bulk-reason').focus();
      return;
    }
    body.reason = reason;
  }
  const cards = ids.map((id) => state.cards.get(id));
  cards.forEach((c) => setBusy(c, true));
  msg.textContent = 'working…';
  try {
    const data = await api('POST', '/api/review/bulk', body);
    let ok = 0, bad = 0;
    for (const r of (data && data.results) || []) {
      const card = state.cards.get(r.id);
      if (!card) continue;
      if (r.ok) {
        ok += 1;
        removeCard(card);
      } else {
        bad += 1;
        setBusy(card, false);
        failed(card, { status: r.status || 0, message: r.error || 'failed' });
      }
    }
    msg.textContent = (action === 'approve' ? 'Approved ' : 'Rejected ') + ok + (bad ? ' · ' + bad + ' failed' : '');
    refreshStatus();
  } catch (e) {
    cards.forEach((c) => setBusy(c, false));
    msg.textContent = 'Bulk ' + action + ' failed: ' + e.message;
  }
  updateSelection();
}
