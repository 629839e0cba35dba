/* DOM helpers shared by every admin page (review, fans, inbox, stats). Data goes into the DOM
   as text nodes and element properties only: no innerHTML, no inline handlers (the pages run
   under a strict CSP). Import with a relative path, e.g. `import { h, $ } from './lib/dom.js'`. */

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/* h('div', {className: 'x', title: 'y', dataset: {id}}, 'text', child) — text children become
   text nodes; props are element properties (no event handlers, no innerHTML). */
export function h(tag, props, ...children) {
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

/* near_duplicate -> near duplicate: how the pages show an API value (status, flag, mode). */
export const label = (s) => String(s).replace(/_/g, ' ');
