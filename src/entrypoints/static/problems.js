/* The "problems" list on the review page: watched files that never became an image, moved to
   <creator>/rejected/ with a .reason.txt (GET /api/problems). Text from data goes into the DOM
   with textContent only. Shown only when there is something to show. */

import { api } from './lib/api.js';
import { h } from './lib/dom.js';

const REFRESH_MS = 15000;

const cell = (tag, text, className) => h(tag, { className }, text);

async function load() {
  const section = document.getElementById('problems');
  const list = document.getElementById('problems-list');
  if (!section || !list) return;
  let data;
  try {
    data = await api('GET', '/api/problems?limit=20');
  } catch (_) {
    return; // the review page itself reports connection problems
  }
  const items = (data && Array.isArray(data.problems)) ? data.problems : [];
  list.replaceChildren(...items.map((p) => {
    const li = document.createElement('li');
    const name = String(p.path || '').split('/').pop();
    li.append(
      cell('span', name, 'problem-file'),
      cell('span', p.creator || '', 'problem-creator'),
      cell('span', p.reason || '', 'problem-reason'),
      cell('span', p.moved_to ? 'moved to ' + p.moved_to : 'not moved', 'problem-where'),
      cell('time', String(p.recorded_at || '').slice(0, 19).replace('T', ' '), 'problem-when'),
    );
    li.title = p.path || '';
    return li;
  }));
  document.getElementById('problems-count').textContent = String(items.length);
  section.hidden = items.length === 0;
}

load();
setInterval(load, REFRESH_MS);
