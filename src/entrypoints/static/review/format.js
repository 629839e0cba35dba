/* Pure formatting and parsing for the review page (no DOM, no state). */

export const LIMITS = { tags: 32, tag: 64, category: 64, description: 2000, reason: 500 };

export function dollarsToCents(text) {
  const s = String(text || '').trim().replace(/^\$/, '').replace(/,/g, '');
  if (s === '') return null;
  const m = /^(\d{1,7})(?:\.(\d{0,2}))?$/.exec(s);
  if (!m) return NaN;
  return parseInt(m[1], 10) * 100 + parseInt((m[2] || '').padEnd(2, '0') || '0', 10);
}

export function centsToDollars(cents) {
  if (cents === null || cents === undefined) return '';
  const n = Number(cents);
  return Math.floor(n / 100) + '.' + String(n % 100).padStart(2, '0');
}

export function parseTags(text) {
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

export function truncate(text, n) {
  const s = String(text || '');
  return s.length > n ? s.slice(0, n - 1).trimEnd() + '…' : s;
}

export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const mins = Math.round((Date.now() - d.getTime()) / 60000);
  if (mins < 1) return 'just now';
  if (mins < 60) return mins + ' min ago';
  if (mins < 48 * 60) return Math.round(mins / 60) + ' h ago';
  return d.toLocaleDateString();
}

export const sameOriginPath = (p) => (typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') ? p : '');
