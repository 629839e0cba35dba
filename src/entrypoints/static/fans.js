/* vaultline Fans page. Plain JS, no build, no CDN; data goes into the DOM with textContent and
   element properties only (strict CSP, no inline handlers).
   /fans            fans by lifetime spend
   /fans?fan=ID     one fan: every image they received (thumbnail, price, bought or not) and a
                    picker of what they can still get, sent through POST /api/sends. */
import { api } from './lib/api.js';
import { $, h } from './lib/dom.js';

(() => {
  const money = (cents) => (cents ? '$' + (cents / 100).toFixed(2) : 'free');
  const when = (iso) => (iso ? iso.slice(0, 16).replace('T', ' ') : '—');
  const fanHref = (f) => '/fans?fan=' + encodeURIComponent(f.fan_id) + '&creator=' + encodeURIComponent(f.creator);

  function notice(text, isError) {
    const n = $('#notice');
    n.textContent = text || '';
    n.classList.toggle('error', !!isError);
  }

  /* ------------------------------------------------------------------ list */

  async function showList() {
    const fans = await api('GET', '/api/fans');
    const rows = $('#fan-rows');
    rows.replaceChildren(...fans.map((f) => h('tr', { dataset: { fan: f.fan_id } },
      h('td', {}, h('a', { href: fanHref(f) }, f.fan_id)),
      h('td', {}, f.handle || ''),
      h('td', {}, f.creator),
      h('td', { className: 'money' }, money(f.lifetime_spend_cents)),
      h('td', {}, String(f.purchases)),
      h('td', {}, String(f.received)),
      h('td', {}, when(f.last_message_at)))));
    $('#fans-empty').hidden = fans.length > 0;
    const total = fans.reduce((s, f) => s + f.lifetime_spend_cents, 0);
    $('#fans-summary').textContent = fans.length + ' fan(s) · ' + money(total) + ' in total';
  }

  /* ------------------------------------------------------------------ one fan */

  function receivedCard(r) {
    const status = r.bought ? h('span', { className: 'bought' }, 'bought ' + when(r.purchased_at))
      : h('span', { className: 'not-bought' }, r.status === 'sent' ? 'not bought' : r.status);
    return h('article', { className: 'fan-card', dataset: { content: r.content_id, bought: String(r.bought) } },
      h('img', { src: r.thumb, alt: r.original_filename || r.content_id, loading: 'lazy' }),
      h('span', { className: 'price' }, money(r.price_cents)),
      status,
      h('span', {}, 'sent ' + when(r.sent_at || r.reserved_at)),
      r.forced ? h('span', { className: 'forced', title: r.reason || '' }, 'forced: ' + (r.reason || '')) : null);
  }

  function offerCard(o, picked) {
    const box = h('input', { type: 'checkbox', value: o.content_id, checked: picked.has(o.content_id) });
    const card = h('article', { className: 'fan-card', dataset: { content: o.content_id } },
      h('img', { src: o.thumb, alt: o.content_id, loading: 'lazy' }),
      h('label', {}, box, h('span', {}, 'pick · ' + money(o.price_cents))),
      o.reasons.length ? h('span', { className: 'why' }, o.reasons.join('; ')) : null);
    box.addEventListener('change', () => {
      if (box.checked) picked.add(o.content_id); else picked.delete(o.content_id);
      card.classList.toggle('picked', box.checked);
      $('#send-button').disabled = picked.size === 0;
    });
    return card;
  }

  async function showFan(fanId, creator) {
    $('#fan-list').hidden = true;
    $('#fan-page').hidden = false;
    const q = creator ? '?creator=' + encodeURIComponent(creator) : '';
    const detail = await api('GET', '/api/fans/' + encodeURIComponent(fanId) + q);
    const f = detail.fan;
    $('#fan-title').textContent = f.fan_id + (f.handle ? ' (@' + f.handle + ')' : '');
    $('#fans-summary').textContent = f.creator + ' on ' + f.platform;
    $('#fan-facts').textContent = 'spent ' + money(f.lifetime_spend_cents) + ' in ' + f.purchases
      + ' purchase(s) · first seen ' + when(f.first_seen_at) + ' · last message ' + when(f.last_message_at);
    $('#received').replaceChildren(...detail.received.map(receivedCard));
    $('#received-empty').hidden = detail.received.length > 0;

    const offers = await api('GET', '/api/fans/' + encodeURIComponent(fanId) + '/offers?creator=' + encodeURIComponent(f.creator));
    const picked = new Set();
    $('#offers').replaceChildren(...offers.offers.map((o) => offerCard(o, picked)));
    $('#offers-empty').hidden = offers.offers.length > 0;
    const price = $('#send-price');
    if (!price.value && offers.offers.length) price.value = (offers.offers[0].price_cents / 100).toFixed(2);
    $('#send-button').disabled = true;

    const form = $('#send-form');
    form.onsubmit = null;
    form.replaceWith(form.cloneNode(true)); // drop earlier listeners
    $('#send-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const msg = $('#send-msg');
      const raw = $('#send-price').value.trim();
      const cents = raw ? Math.round(parseFloat(raw) * 100) : null;
      if (raw && !(cents >= 0)) { msg.textContent = 'price must be a number of dollars'; msg.className = 'error'; return; }
      const ids = Array.from(document.querySelectorAll('#offers input[type=checkbox]:checked')).map((b) => b.value);
      msg.textContent = 'sending…';
      msg.className = '';
      try {
        const r = await api('POST', '/api/sends', { fan_id: f.fan_id, creator: f.creator, content_ids: ids,
          price_cents: cents || null, text: $('#send-text').value || null });
        await showFan(fanId, f.creator);
        $('#send-msg').textContent = 'sent ' + r.content_ids.length + ' image(s) at ' + money(r.price_cents);
      } catch (e) {
        $('#send-msg').textContent = e.message;
        $('#send-msg').className = 'error';
      }
    });
  }

  async function main() {
    const params = new URLSearchParams(window.location.search);
    try {
      if (params.get('fan')) await showFan(params.get('fan'), params.get('creator'));
      else await showList();
    } catch (e) {
      notice(e.message, true);
    }
  }

  main();
})();
