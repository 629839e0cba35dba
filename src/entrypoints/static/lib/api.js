/* The admin JSON API from every admin page: same-origin fetch with the session cookie, JSON in
   and out, errors as ApiError(status, message) from the API's {"error": message} body. A missing
   or stale session (401, or 403 about the token) sends the browser to the login form.
   Usage: `import { api, ApiError } from './lib/api.js'; const data = await api('GET', '/api/meta');` */

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body) {
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
