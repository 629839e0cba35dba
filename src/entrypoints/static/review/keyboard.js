/* The review page's keys (the help panel lists them): arrows move between cards; on a card
   A approve, R reject, T tags, P price, 1-9 vault, O original, X / Space select; on a failed
   upload U retries; in a text field only Enter and Esc mean something. */

import { $ } from '../lib/dom.js';
import {
  approve, closeReject, openReject, reject, retryUpload, saveTags, setSelected, setVault, toggleOriginal,
} from './actions.js';
import { cardOf, cardsInGrid, focusCard, grid, idOf, state, vaultForKey } from './state.js';

const TYPING = 'input:not([type=checkbox]):not([type=radio]):not([type=button]), textarea, select, [contenteditable=""], [contenteditable="true"]';
const MOVES = ['ArrowRight', 'ArrowLeft', 'ArrowUp', 'ArrowDown', 'Home', 'End'];

export function toggleHelp() {
  const help = $('#help');
  help.hidden = !help.hidden;
  $('#help-toggle').setAttribute('aria-expanded', help.hidden ? 'false' : 'true');
}

function moveFocus(card, key) {
  const list = cardsInGrid();
  if (!list.length) return;
  if (!card) return focusCard(list[0]);
  const i = list.indexOf(card);
  const top = list[0].offsetTop;
  let cols = list.findIndex((c) => c.offsetTop !== top);
  if (cols < 0) cols = list.length;
  let j = i;
  if (key === 'ArrowRight') j = i + 1;
  else if (key === 'ArrowLeft') j = i - 1;
  else if (key === 'ArrowDown') j = i + cols < list.length ? i + cols : (Math.floor(i / cols) < Math.floor((list.length - 1) / cols) ? list.length - 1 : i);
  else if (key === 'ArrowUp') j = i - cols;
  else if (key === 'Home') j = 0;
  else if (key === 'End') j = list.length - 1;
  if (j >= 0 && j < list.length) focusCard(list[j]);
}

function onKeydown(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  const t = e.target;
  const card = cardOf(t);

  // Inside a text field: only Enter / Escape mean something, everything else is typing.
  if (t.matches && t.matches(TYPING)) {
    if (!card) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    if (e.key === 'Escape') {
      e.preventDefault();
      if (t.classList.contains('reason')) closeReject(card);
      else focusCard(card);
    } else if (e.key === 'Enter' && t.classList.contains('reason')) {
      e.preventDefault();
      reject(card);
    } else if (e.key === 'Enter' && t.classList.contains('tags')) {
      e.preventDefault();
      saveTags(card);
    }
    return;
  }

  if (e.key === '?') {
    e.preventDefault();
    toggleHelp();
    return;
  }
  if (MOVES.includes(e.key)) {
    if (card || t === document.body || t === grid) {
      e.preventDefault();
      moveFocus(card, e.key);
    }
    return;
  }
  if (!card) return;
  const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const onCardItself = t === card;
  if (card.classList.contains('card-failed')) {
    // A failed upload has one action; the decision keys mean nothing here.
    if (k === 'u') {
      if (!e.repeat) retryUpload(card);
    } else if (k === 'Escape') {
      focusCard(card);
    } else {
      return;
    }
    e.preventDefault();
    return;
  }
  const vault = vaultForKey(k);
  if (vault) {
    setVault(card, vault);
    e.preventDefault();
    return;
  }
  switch (k) {
    case 'a':
      if (!e.repeat) approve(card);
      break;
    case 'r':
      openReject(card);
      break;
    case 't':
      $('.tags', card).focus();
      break;
    case 'p':
      $('.price', card).focus();
      $('.price', card).select();
      break;
    case 'o':
      toggleOriginal(card);
      break;
    case 'x':
      setSelected(card, !state.selected.has(idOf(card)));
      break;
    case ' ':
      if (!onCardItself) return; // Space on a button / checkbox keeps its own meaning
      setSelected(card, !state.selected.has(idOf(card)));
      break;
    case 'Escape':
      if (card.classList.contains('rejecting')) closeReject(card);
      else focusCard(card);
      break;
    default:
      return;
  }
  e.preventDefault();
}

export function installKeyboard() {
  document.addEventListener('keydown', onKeydown);
}
