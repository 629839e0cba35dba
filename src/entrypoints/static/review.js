/* vaultline review page. Plain JS, no build, no CDN. Everything that comes from data is put
   into the DOM with textContent / element properties, never innerHTML, and there are no inline
   handlers: the page runs under `Content-Security-Policy: default-src 'self'`.
   The API (review contract): /api/content, /api/content/{id}/{approve,reject,tags,recrop,retry-upload},
   /api/review/bulk, /api/status. Requests are same-origin and carry the session cookie.
   Two views: "In review" (status in_review, decisions) and "Failed uploads" (status
   upload_failed: the platform's reason and a retry, nothing else). */
'use strict';

(() => {
  const PAGE_SIZE = 50;
  const VAULTS = ['feed', 'ppv', 'archive'];
  const RECROP_MODES = [
    ['no_face', 'no face'],
    ['chin', 'chin'],
    ['lips_only', 'lips only'],
  ];
  const BADGES = {
    face: ['face', 'A face was found and used for the cut'],
    fallback: ['fallback', 'No trustworthy face: a fixed cut was used'],
    near_duplicate: ['near-duplicate', 'Looks like an image already in the library'],
    needs_manual_crop: ['needs manual crop', 'The cut would leave too little: crop by hand'],
    face_check: ['face check', 'The output check found a face the first cut left visible and moved the cut below it (or flagged a manual crop)'],
  };
  const STAGE_ORDER = ['generated', 'cropped', 'in_review', 'recrop_requested', 'crop_failed', 'approved',
    'uploaded', 'upload_failed', 'rejected'];
  const PROMPT_CHARS = 160;
  const LIMITS = { tags: 32, tag: 64, category: 64, description: 2000, reason: 500 };

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /* h('div', {className: 'x', title: 'y', dataset: {id}}, 'text', child) — text children become
     text nodes; props are element properties (no event handlers, no innerHTML). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('aria-') || k === 'role' || k === 'for') el.setAttribute(k, String(v));
      else if (k.startsWith('on') || k === 'innerHTML' || k === 'outerHTML') throw new Error('not allowed: ' + k);
      else el[k] = v;
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /* ------------------------------------------------------------------ API */

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network error: ' + (e && e.message ? e.message : e));
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const message = (data && typeof data.error === 'string' && data.error) || res.statusText || 'request failed';
      if (res.status === 401 || (res.status === 403 && /token/.test(message))) {
        window.location.assign('/login');
      }
      throw new ApiError(res.status, message);
    }
    return data;
  }

  const idPath = (id) => '/api/content/' + encodeURIComponent(id);

  /* ------------------------------------------------------------------ state */

  /* Each view keeps its own cards, so what was typed into a review card survives a look at
     the failed uploads. */
  const VIEWS = {
    review: { status: 'in_review', label: 'Items in review', empty: 'Nothing waiting for review.',
      cards: new Map(), items: new Map() },
    failed: { status: 'upload_failed', label: 'Failed uploads', empty: 'No failed uploads.',
      cards: new Map(), items: new Map() },
  };
  const HASH_VIEW = { '#failed-uploads': 'failed' };

  const state = {
    view: 'review',
    cards: VIEWS.review.cards, // id -> card element (of the current view)
    items: VIEWS.review.items, // id -> item JSON (of the current view)
    selected: new Set(), // review view only
    cursor: null,
    current: null, // id of the card that had the focus last
    loading: false,
    loadSeq: 0, // a load started before a view switch is dropped when it answers
  };

  const grid = $('#grid');
  const fCreator = $('#f-creator');
  const fFlag = $('#f-flag');

  /* ------------------------------------------------------------------ formatting */

  function dollarsToCents(text) {
    const s = String(text || '').trim().replace(/^\$/, '').replace(/,/g, '');
    if (s === '') return null;
    const m = /^(\d{1,7})(?:\.(\d{0,2}))?$/.exec(s);
    if (!m) return NaN;
    return parseInt(m[1], 10) * 100 + parseInt((m[2] || '').padEnd(2, '0') || '0', 10);
  }

  function centsToDollars(cents) {
    if (cents === null || cents === undefined) return '';
    const n = Number(cents);
    return Math.floor(n / 100) + '.' + String(n % 100).padStart(2, '0');
  }

  function parseTags(text) {
    const seen = new Set();
    const out = [];
    for (const raw of String(text || '').split(',')) {
      const t = raw.trim();
      if (t && !seen.has(t.toLowerCase())) {
        seen.add(t.toLowerCase());
        out.push(t);
      }
    }
    return out;
  }

  function truncate(text, n) {
    const s = String(text || '');
    return s.length > n ? s.slice(0, n - 1).trimEnd() + '…' : s;
  }

  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const mins = Math.round((Date.now() - d.getTime()) / 60000);
    if (mins < 1) return 'just now';
    if (mins < 60) return mins + ' min ago';
    if (mins < 48 * 60) return Math.round(mins / 60) + ' h ago';
    return d.toLocaleDateString();
  }

  const label = (s) => String(s).replace(/_/g, ' ');
  const sameOriginPath = (p) => (typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') ? p : '');

  /* ------------------------------------------------------------------ cards */

  function field(labelText, control, extraClass) {
    return h('label', { className: 'field' + (extraClass ? ' ' + extraClass : '') }, h('span', {}, labelText), control);
  }

  function makeCard(item) {
    const name = item.original_filename || item.id;
    const images = item.images || {};

    // Media: the cropped thumb, or the original with the cut line drawn.
    const thumb = h('img', { className: 'thumb', alt: 'cropped ' + name, loading: 'lazy', decoding: 'async',
      src: sameOriginPath(images.thumb || images.cropped) });
    const cropView = h('div', { className: 'view view-crop' }, thumb);
    const origImg = h('img', { className: 'orig', alt: 'original ' + name, decoding: 'async' });
    const origWrap = h('div', { className: 'orig-wrap' }, origImg);
    const hasCut = Number.isFinite(item.cut_y) && Number.isFinite(item.height) && item.height > 0;
    if (Number.isFinite(item.width) && Number.isFinite(item.height) && item.width > 0 && item.height > 0) {
      origWrap.style.setProperty('--ar', String(item.width / item.height));
    }
    if (hasCut) {
      const frac = Math.min(1, Math.max(0, item.cut_y / item.height));
      origWrap.style.setProperty('--cut', String(frac));
      origWrap.append(
        h('div', { className: 'removed', title: 'removed by the crop' }),
        h('div', { className: 'cutline', role: 'img', 'aria-label': 'cut at y=' + item.cut_y + ' of ' + item.height },
          h('span', {}, 'cut y=' + item.cut_y)),
      );
    }
    const origView = h('div', { className: 'view view-orig', hidden: true }, origWrap);
    const toggle = h('button', { type: 'button', className: 'toggle', title: 'Show the original with the cut line (O)',
      'aria-pressed': 'false' }, 'Original');
    const pick = h('input', { type: 'checkbox', className: 'pick', title: 'Select for bulk actions (X)',
      'aria-label': 'select ' + name });
    const media = h('div', { className: 'media' }, cropView, origView,
      h('label', { className: 'pick-box' }, pick), toggle);

    // Facts.
    const badges = h('div', { className: 'badges' },
      (item.badges || []).map((b) => {
        const [text, title] = BADGES[b] || [label(b), ''];
        let t = title;
        if (b === 'fallback' && item.fallback_reason) t += ': ' + item.fallback_reason;
        if (b === 'near_duplicate' && item.near_duplicate_of) t += ' (' + item.near_duplicate_of + ')';
        return h('span', { className: 'badge badge-' + b.replace(/[^a-z_]/g, ''), title: t }, text);
      }),
    );
    const facts = [item.creator, when(item.created_at)];
    if (item.crop_mode_used) facts.push('crop ' + label(item.crop_mode_used));
    if (Number.isFinite(item.faces)) facts.push(item.faces + (item.faces === 1 ? ' face' : ' faces'));
    if (Number.isFinite(item.crop_confidence)) facts.push('conf ' + item.crop_confidence.toFixed(2));
    const prompt = item.comfy && item.comfy.positive_prompt;
    const chips = h('ul', { className: 'chips', 'aria-label': 'tags' });
    renderChips(chips, item.tags || []);

    // Decision fields.
    const vault = h('select', { className: 'vault', title: 'Vault (1 feed, 2 ppv, 3 archive)' },
      VAULTS.map((v) => h('option', { value: v }, v)));
    vault.value = VAULTS.includes(item.vault) ? item.vault : 'feed';
    const price = h('input', { className: 'price', type: 'text', inputMode: 'decimal', placeholder: '0.00',
      value: centsToDollars(item.price_cents), autocomplete: 'off', title: 'Price in dollars (P); needed for ppv' });
    const category = h('input', { className: 'category', type: 'text', maxLength: LIMITS.category,
      value: item.category || '', autocomplete: 'off' });
    const tags = h('input', { className: 'tags', type: 'text', value: (item.tags || []).join(', '),
      placeholder: 'comma, separated', autocomplete: 'off', title: 'Tags (T); Enter saves them' });
    const desc = h('textarea', { className: 'desc', rows: 2, maxLength: LIMITS.description,
      value: item.description || '', placeholder: 'caption / description' });

    const mode = h('select', { className: 'recrop-mode', 'aria-label': 'crop mode for a re-crop' },
      RECROP_MODES.map(([v, t]) => h('option', { value: v }, t)));
    const other = RECROP_MODES.map(([v]) => v).find((v) => v !== item.crop_mode_used && v !== item.requested_crop_mode);
    if (other) mode.value = other;

    const reason = h('input', { className: 'reason', type: 'text', maxLength: LIMITS.reason, autocomplete: 'off',
      placeholder: 'Why? Enter rejects, Esc cancels', 'aria-label': 'reject reason' });
    const rejectRow = h('div', { className: 'reject-row', hidden: true }, reason,
      h('button', { type: 'button', className: 'confirm-reject reject' }, 'Reject'),
      h('button', { type: 'button', className: 'cancel-reject' }, 'Cancel'));

    const error = h('p', { className: 'error', role: 'alert', hidden: true });

    const card = h('article', { className: 'card', tabIndex: 0, dataset: { id: item.id, vault: vault.value }, 'aria-label': name },
      media,
      h('div', { className: 'info' },
        badges,
        h('h2', { className: 'name', title: name }, name),
        h('p', { className: 'facts' }, facts.filter(Boolean).join(' · ')),
        prompt ? h('p', { className: 'prompt', title: prompt }, truncate(prompt, PROMPT_CHARS)) : null,
        chips),
      h('div', { className: 'edit' },
        h('div', { className: 'row' }, field('Vault', vault), field('Price $', price, 'narrow')),
        h('div', { className: 'row' }, field('Category', category), field('Tags', tags, 'wide')),
        field('Description', desc, 'block'),
      ),
      h('div', { className: 'actions' },
        h('button', { type: 'button', className: 'approve', title: 'Approve (A)' }, 'Approve', h('kbd', {}, 'A')),
        h('button', { type: 'button', className: 'reject open-reject', title: 'Reject (R)' }, 'Reject', h('kbd', {}, 'R')),
        h('span', { className: 'recrop-group' }, mode,
          h('button', { type: 'button', className: 'recrop', title: 'Crop again with this mode' }, 'Recrop')),
      ),
      rejectRow,
      error,
    );
    return card;
  }

  /* A failed upload: what it is, where it was going and why the platform refused. No decision
     controls; the one action is a retry. */
  function makeFailedCard(item) {
    const name = item.original_filename || item.id;
    const images = item.images || {};
    const thumb = h('img', { className: 'thumb', alt: 'cropped ' + name, loading: 'lazy', decoding: 'async',
      src: sameOriginPath(images.thumb || images.cropped) });
    const media = h('div', { className: 'media' }, h('div', { className: 'view view-crop' }, thumb));
    const price = item.price_cents ? '$' + centsToDollars(item.price_cents) : 'no price';
    const facts = [item.creator, when(item.created_at)];
    const card = h('article', { className: 'card card-failed', tabIndex: 0,
      dataset: { id: item.id, expect: 'upload_failed' }, 'aria-label': name + ': upload failed' },
      media,
      h('div', { className: 'info' },
        h('div', { className: 'badges' }, h('span', { className: 'badge badge-upload_failed' }, 'upload failed')),
        h('h2', { className: 'name', title: name }, name),
        h('p', { className: 'facts' }, facts.filter(Boolean).join(' · ')),
        h('dl', { className: 'dest' },
          h('dt', {}, 'Vault'), h('dd', { className: 'dest-vault' }, item.vault || '—'),
          h('dt', {}, 'Price'), h('dd', { className: 'dest-price' }, price)),
        h('p', { className: 'fail-reason', title: 'What the platform said' },
          item.error || 'The upload failed (no reason was recorded).')),
      h('div', { className: 'actions' },
        h('button', { type: 'button', className: 'retry', title: 'Retry the upload (U)' },
          'Retry upload', h('kbd', {}, 'U'))),
      h('p', { className: 'error', role: 'alert', hidden: true }),
    );
    return card;
  }

  function renderChips(ul, tags) {
    ul.replaceChildren(...tags.map((t) => h('li', {}, t)));
    ul.hidden = tags.length === 0;
  }

  const cardOf = (el) => (el && el.closest ? el.closest('.card') : null);
  const idOf = (card) => card.dataset.id;
  const cardsInGrid = () => $$('.card', grid);

  function showError(card, message) {
    const p = $('.error', card);
    p.textContent = message;
    p.hidden = !message;
  }

  function setBusy(card, busy) {
    card.classList.toggle('busy', busy);
    card.setAttribute('aria-busy', busy ? 'true' : 'false');
    for (const b of $$('button', card)) b.disabled = busy || card.classList.contains('stale');
  }

  function notice(text) {
    $('#notice').textContent = text;
  }

  function focusCard(card) {
    if (!card) return;
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }

  /* ------------------------------------------------------------------ loading */

  function updateEmpty() {
    $('#empty').hidden = state.cards.size > 0 || state.loading;
  }

  async function load({ append = false } = {}) {
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

  async function refreshStatus() {
    try {
      const data = await api('GET', '/api/status');
      const stages = (data && data.stages) || {};
      // Stages with nothing in them are left out, except the one this page is about.
      const names = Object.keys(stages).filter((n) => stages[n] > 0 || n === 'in_review').sort((a, b) => {
        const ia = STAGE_ORDER.indexOf(a), ib = STAGE_ORDER.indexOf(b);
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

  function forget(id) {
    state.cards.delete(id);
    state.items.delete(id);
    state.selected.delete(id);
  }

  /* A decided / re-cropped card leaves the grid; the focus goes to the card that takes its place. */
  function removeCard(card) {
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

  /* After a 409/404 the item changed elsewhere: show what it is now and lock the card. */
  async function markStale(card) {
    try {
      const item = await api('GET', idPath(idOf(card)));
      if (item && item.status === (card.dataset.expect || 'in_review')) return;
      card.classList.add('stale');
      $('.badges', card).prepend(h('span', { className: 'badge badge-status' }, 'now ' + label(item ? item.status : 'gone')));
    } catch (e) {
      card.classList.add('stale');
    }
    setBusy(card, false);
  }

  function failed(card, e) {
    showError(card, (e.status ? e.status + ' — ' : '') + e.message);
    if (e.status === 409 || e.status === 404) markStale(card);
  }

  /* ------------------------------------------------------------------ actions */

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

  async function approve(card) {
    if (card.classList.contains('busy') || card.classList.contains('stale')) return;
    const { body, error, focus } = decisionFields(card);
    if (error) {
      showError(card, error);
      const el = $(focus, card);
      el.classList.add('invalid');
      el.focus();
      return;
    }
    showError(card, '');
    setBusy(card, true);
    try {
      const item = await api('POST', idPath(idOf(card)) + '/approve', body);
      const name = $('.name', card).textContent;
      const price = item && item.price_cents ? ' $' + centsToDollars(item.price_cents) : '';
      notice('Approved ' + name + ' → ' + ((item && item.vault) || body.vault) + price);
      removeCard(card);
      refreshStatus();
    } catch (e) {
      setBusy(card, false);
      failed(card, e);
    }
  }

  function openReject(card) {
    if (card.classList.contains('busy') || card.classList.contains('stale')) return;
    const row = $('.reject-row', card);
    row.hidden = false;
    card.classList.add('rejecting');
    $('.reason', card).focus();
  }

  function closeReject(card) {
    $('.reject-row', card).hidden = true;
    card.classList.remove('rejecting');
    focusCard(card);
  }

  async function reject(card) {
    if (card.classList.contains('busy') || card.classList.contains('stale')) return;
    const reasonEl = $('.reason', card);
    const reason = reasonEl.value.trim();
    if (!reason) {
      showError(card, 'Type a reason to reject');
      reasonEl.classList.add('invalid');
      reasonEl.focus();
      return;
    }
    showError(card, '');
    setBusy(card, true);
    try {
      await api('POST', idPath(idOf(card)) + '/reject', { reason });
      notice('Rejected ' + $('.name', card).textContent + ': ' + reason);
      removeCard(card);
      refreshStatus();
    } catch (e) {
      setBusy(card, false);
      failed(card, e);
      reasonEl.focus();
    }
  }

  async function saveTags(card) {
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

  async function recrop(card) {
    if (card.classList.contains('busy') || card.classList.contains('stale')) return;
    const mode = $('.recrop-mode', card).value;
    setBusy(card, true);
    try {
      await api('POST', idPath(idOf(card)) + '/recrop', { mode });
      notice('Re-crop requested (' + label(mode) + ') for ' + $('.name', card).textContent);
      removeCard(card);
      refreshStatus();
    } catch (e) {
      setBusy(card, false);
      failed(card, e);
    }
  }

  async function retryUpload(card) {
    if (card.classList.contains('busy') || card.classList.contains('stale')) return;
    showError(card, '');
    setBusy(card, true);
    try {
      await api('POST', idPath(idOf(card)) + '/retry-upload');
      notice('Upload retry requested for ' + $('.name', card).textContent + ': it is back in the upload queue');
      removeCard(card);
      refreshStatus();
    } catch (e) {
      setBusy(card, false);
      failed(card, e);
    }
  }

  function toggleOriginal(card) {
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

  function vaultChanged(card, vault) {
    card.dataset.vault = vault;
    $('.vault', card).classList.remove('invalid');
    if (vault !== 'ppv') {
      $('.price', card).classList.remove('invalid');
      showError(card, '');
    }
  }

  function setVault(card, vault) {
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

  function setSelected(card, on) {
    const id = idOf(card);
    if (on) state.selected.add(id);
    else state.selected.delete(id);
    $('.pick', card).checked = on;
    card.classList.toggle('selected', on);
    updateSelection();
  }

  function updateSelection() {
    const n = state.selected.size;
    $('#sel-count').textContent = n + ' selected';
    $('#bulk-approve').disabled = n === 0;
    $('#bulk-reject').disabled = n === 0;
    const all = $('#select-all');
    all.checked = n > 0 && n === state.cards.size;
    all.indeterminate = n > 0 && n < state.cards.size;
    $('#bulk').classList.toggle('active', n > 0);
  }

  async function bulk(action) {
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

  /* ------------------------------------------------------------------ events */

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

  const TYPING = 'input:not([type=checkbox]):not([type=radio]):not([type=button]), textarea, select, [contenteditable=""], [contenteditable="true"]';

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

  document.addEventListener('keydown', (e) => {
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
    if (['ArrowRight', 'ArrowLeft', 'ArrowUp', 'ArrowDown', 'Home', 'End'].includes(e.key)) {
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
      case '1': case '2': case '3':
        setVault(card, VAULTS[Number(k) - 1]);
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
  });

  function toggleHelp() {
    const help = $('#help');
    help.hidden = !help.hidden;
    $('#help-toggle').setAttribute('aria-expanded', help.hidden ? 'false' : 'true');
  }

  /* ------------------------------------------------------------------ views */

  function setView(name, { push = true } = {}) {
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
    $('#bulk').hidden = name !== 'review';
    $('#flag-filter').hidden = name !== 'review';
    grid.setAttribute('aria-label', view.label);
    $('#empty').textContent = view.empty;
    if (push) {
      const hash = name === 'failed' ? '#failed-uploads' : '';
      if (window.location.hash !== hash) {
        history.replaceState(null, '', window.location.pathname + window.location.search + hash);
      }
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
    const name = HASH_VIEW[window.location.hash] || 'review';
    if (name === state.view) return;
    setView(name, { push: false });
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

  setView(HASH_VIEW[window.location.hash] || 'review', { push: false });
  grid.setAttribute('aria-busy', 'true');
  refreshStatus();
  load();
  window.setInterval(() => {
    if (document.visibilityState === 'visible') refreshStatus();
  }, 15000);
})();
