/* The "problems" list on the review page: watched files that never became an image, moved to
   <creator>/rejected/ with a .reason.txt (GET /api/problems). Text from data goes into the DOM
   with textContent only. Shown only when there is something to show. */

const REFRESH_MS = 15000;

function cell(tag, text, className) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

async function load() {
  const section = document.getElementById('problems');
  const list = document.getElementById('problems-list');
  if (!section || !list) return;
  let data;
  try {
    const res = await fetch('/api/problems?limit=20', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!res.ok) return;
    data = await res.json();
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
