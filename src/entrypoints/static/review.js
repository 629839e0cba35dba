/* vaultline review page: the entry module. Plain ES modules, no build, no CDN; everything that
   comes from data is put into the DOM with textContent / element properties, never innerHTML,
   and there are no inline handlers (the page runs under `Content-Security-Policy: default-src
   'self'`). The modules:
     lib/dom.js, lib/api.js   h() and the fetch wrapper, shared with the other admin pages
     review/state.js          page state, the vocabularies from GET /api/meta, small DOM updates
     review/cards.js          the cards (in review; failed upload)
     review/views.js          loading, the status line, the two views and the URL (?view=failed)
     review/actions.js        approve, reject, tags, re-crop, retry, bulk
     review/keyboard.js       the keys
   The API (review contract): /api/meta, /api/content, /api/content/{id}/{approve,reject,tags,
   recrop,retry-upload}, /api/review/bulk, /api/status. Requests are same-origin and carry the
   session cookie. Imported modules are fetched without the ?v= hash this file has: the admin
   app serves /static with `Cache-Control: no-cache`, so the browser revalidates each one. */

import { $, $$ } from './lib/dom.js';
import './problems.js'; // the "problems" list above the grid (GET /api/problems)
import {
  approve, bulk, closeReject, openReject, recrop, reject, retryUpload, setSelected, toggleOriginal, vaultChanged,
} from './review/actions.js';
import { installKeyboard, toggleHelp } from './review/keyboard.js';
import { cardOf, cardsInGrid, fCreator, fFlag, focusCard, grid, idOf, state } from './review/state.js';
import { load, refreshStatus, setView, viewFromUrl } from './review/views.js';

grid.addEventListener('click', (e) => {
  const card = cardOf(e.target);
  if (!card) return;
  const t = e.target;
  if (t.closest('.approve')) approve(card);
  else if (t.closest('.open-reject')) openReject(card);
  else if (t.closest('.confirm-reject')) reject(card);
  else if (t.closest('.cancel-reject')) closeReject(card);
  else if (t.closest('.recrop')) recrop(card);
  else if (t.closest('.retry')) retryUpload(card);
  else if (t.closest('.toggle')) toggleOriginal(card);
  else if (t.closest('.view')) focusCard(card);
});

grid.addEventListener('change', (e) => {
  const card = cardOf(e.target);
  if (!card) return;
  if (e.target.classList.contains('pick')) setSelected(card, e.target.checked);
  if (e.target.classList.contains('vault')) vaultChanged(card, e.target.value);
});

grid.addEventListener('input', (e) => {
  e.target.classList.remove('invalid');
});

grid.addEventListener('focusin', (e) => {
  const card = cardOf(e.target);
  if (!card) return;
  state.current = idOf(card);
  for (const c of $$('.card.current', grid)) if (c !== card) c.classList.remove('current');
  card.classList.add('current');
});

installKeyboard();

for (const b of $$('.view-btn')) {
  b.addEventListener('click', () => {
    if (b.dataset.view === state.view) return;
    setView(b.dataset.view);
    grid.setAttribute('aria-busy', 'true');
    load();
    refreshStatus();
  });
}
window.addEventListener('hashchange', () => {
  const name = viewFromUrl();
  if (name === state.view) return;
  setView(name);
  load();
});

$('#help-toggle').addEventListener('click', toggleHelp);
$('#refresh').addEventListener('click', () => {
  load();
  refreshStatus();
});
$('#more').addEventListener('click', () => load({ append: true }));
fCreator.addEventListener('change', () => load());
fFlag.addEventListener('change', () => load());
$('#select-all').addEventListener('change', (e) => {
  for (const card of cardsInGrid()) setSelected(card, e.target.checked);
});
$('#bulk-approve').addEventListener('click', () => bulk('approve'));
$('#bulk-reject').addEventListener('click', () => bulk('reject'));
$('#bulk-reason').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    bulk('reject');
  }
});

state.loading = true; // the first load follows at once: no "nothing here" note before it
setView(viewFromUrl());
grid.setAttribute('aria-busy', 'true');
refreshStatus();
load();
window.setInterval(() => {
  if (document.visibilityState === 'visible') refreshStatus();
}, 15000);
