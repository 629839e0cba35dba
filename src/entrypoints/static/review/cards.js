/* The review page's cards: one per item in review (decision controls) and one per failed upload
   (the platform's reason and a retry). Built with h(): every value from the API is text. */

import { $, h, label } from '../lib/dom.js';
import { LIMITS, centsToDollars, sameOriginPath, truncate, when } from './format.js';
import { meta } from './state.js';

const PROMPT_CHARS = 160;
const BADGES = {
  face: ['face', 'A face was found and used for the cut'],
  fallback: ['fallback', 'No trustworthy face: a fixed cut was used'],
  near_duplicate: ['near-duplicate', 'Looks like an image already in the library'],
  needs_manual_crop: ['needs manual crop', 'The cut would leave too little: crop by hand'],
  face_check: ['face check', 'The output check found a face the first cut left visible and moved the cut below it (or flagged a manual crop)'],
};

function field(labelText, control, extraClass) {
  return h('label', { className: 'field' + (extraClass ? ' ' + extraClass : '') }, h('span', {}, labelText), control);
}

export function renderChips(ul, tags) {
  ul.replaceChildren(...tags.map((t) => h('li', {}, t)));
  ul.hidden = tags.length === 0;
}

export function makeCard(item) {
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

  // Decision fields: vaults and crop modes are the server's (GET /api/meta).
  const vaultKeys = meta.vaults.slice(0, 9).map((v, i) => (i + 1) + ' ' + v).join(', ');
  const vault = h('select', { className: 'vault', title: 'Vault (' + vaultKeys + ')' },
    meta.vaults.map((v) => h('option', { value: v }, v)));
  vault.value = meta.vaults.includes(item.vault) ? item.vault : meta.vaults[0];
  const price = h('input', { className: 'price', type: 'text', inputMode: 'decimal', placeholder: '0.00',
    value: centsToDollars(item.price_cents), autocomplete: 'off', title: 'Price in dollars (P); needed for ppv' });
  const category = h('input', { className: 'category', type: 'text', maxLength: LIMITS.category,
    value: item.category || '', autocomplete: 'off' });
  const tags = h('input', { className: 'tags', type: 'text', value: (item.tags || []).join(', '),
    placeholder: 'comma, separated', autocomplete: 'off', title: 'Tags (T); Enter saves them' });
  const desc = h('textarea', { className: 'desc', rows: 2, maxLength: LIMITS.description,
    value: item.description || '', placeholder: 'caption / description' });

  const mode = h('select', { className: 'recrop-mode', 'aria-label': 'crop mode for a re-crop' },
    meta.crop_modes.map((v) => h('option', { value: v }, label(v))));
  const other = meta.crop_modes.find((v) => v !== item.crop_mode_used && v !== item.requested_crop_mode);
  if (other) mode.value = other;

  const reason = h('input', { className: 'reason', type: 'text', maxLength: LIMITS.reason, autocomplete: 'off',
    placeholder: 'Why? Enter rejects, Esc cancels', 'aria-label': 'reject reason' });
  const rejectRow = h('div', { className: 'reject-row', hidden: true }, reason,
    h('button', { type: 'button', className: 'confirm-reject reject' }, 'Reject'),
    h('button', { type: 'button', className: 'cancel-reject' }, 'Cancel'));

  const error = h('p', { className: 'error', role: 'alert', hidden: true });

  return h('article', { className: 'card', tabIndex: 0, dataset: { id: item.id, vault: vault.value }, 'aria-label': name },
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
}

/* A failed upload: what it is, where it was going and why the platform refused. No decision
   controls; the one action is a retry. */
export function makeFailedCard(item) {
  const name = item.original_filename || item.id;
  const images = item.images || {};
  const thumb = h('img', { className: 'thumb', alt: 'cropped ' + name, loading: 'lazy', decoding: 'async',
    src: sameOriginPath(images.thumb || images.cropped) });
  const media = h('div', { className: 'media' }, h('div', { className: 'view view-crop' }, thumb));
  const price = item.price_cents ? '$' + centsToDollars(item.price_cents) : 'no price';
  const facts = [item.creator, when(item.created_at)];
  return h('article', { className: 'card card-failed', tabIndex: 0,
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
}

/* A card whose item changed elsewhere (409/404): its current status as a badge. */
export function addStatusBadge(card, status) {
  $('.badges', card).prepend(h('span', { className: 'badge badge-status' }, 'now ' + label(status)));
}
