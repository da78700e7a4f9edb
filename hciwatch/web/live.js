/* hciwatch live page: asks for the API token once per browser session, fetches the report model
 * from GET /api/v1/report and keeps the views current from the alert stream without reloading.
 *
 * Why fetch() and not EventSource for the stream: EventSource cannot send an Authorization
 * header, and a token in the URL would end up in logs. So the SSE wire format is parsed here from
 * a streamed fetch body; on disconnect the stream is reopened with Last-Event-ID, as EventSource
 * would, so nothing is missed while the ring still holds it. The token lives in sessionStorage:
 * gone when the tab closes, never sent anywhere but this origin.
 */
(function () {
  'use strict';

  const TOKEN_KEY = 'hciwatch.token';
  const REFRESH_MS = 5 * 60 * 1000; // pools and heat strips move slowly; alerts arrive live
  const AFTER_ALERT_MS = 15 * 1000; // refetch soon after an alert so the charts catch up
  const views = window.hciwatchViews;
  const live = { lastEventId: null, retryMs: 5000, abort: null, refreshTimer: null, soonTimer: null,
                 events: 0, connected: false, stopped: false, gen: 0 };
  window.hciwatchLive = live;

  const $ = (id) => document.getElementById(id);

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function status(cls, text) {
    const s = $('live-status');
    s.className = cls;
    s.querySelector('.text').textContent = text;
  }

  function askToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    $('token-form').classList.remove('hidden');
    $('token-error').textContent = message || '';
    $('token-input').value = '';
    $('token-input').focus();
    status('disconnected', 'waiting for the API token');
  }

  function stop() {
    live.stopped = true;
    if (live.abort) live.abort.abort();
    clearTimeout(live.refreshTimer);
    clearTimeout(live.soonTimer);
  }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: 'no-store' });
    if (resp.status === 401) {
      const err = new Error('unauthorized');
      err.unauthorized = true;
      throw err;
    }
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp.json();
  }

  let rendered = false;
  async function loadModel() {
    const params = new URLSearchParams(window.location.search);
    const q = new URLSearchParams();
    for (const k of ['from', 'to', 'hours']) if (params.get(k)) q.set(k, params.get(k));
    const model = await api('/api/v1/report' + (q.toString() ? `?${q}` : ''));
    if (!rendered) {
      views.render(model, $('app'), { live: true });
      rendered = true;
    } else {
      views.replaceModel(model);
    }
    clearTimeout(live.refreshTimer);
    live.refreshTimer = setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    try {
      await loadModel();
    } catch (e) {
      if (e.unauthorized) askToken('The token was refused; enter it again.');
      else status('disconnected', `could not refresh the views (${e.message}); retrying`);
      live.refreshTimer = setTimeout(refresh, 30000);
    }
  }

  function onEvent(type, data, id) {
    if (id) live.lastEventId = id;
    if (type === 'alert') {
      const change = JSON.parse(data);
      live.events += 1;
      views.addAlerts([change]);
      status('connected', `live · last alert change ${views.fmtUTC(Date.parse(change.ts) / 1000)} ` +
                          `(${live.events} since this page opened)`);
      clearTimeout(live.soonTimer);
      live.soonTimer = setTimeout(refresh, AFTER_ALERT_MS);
    } else if (type === 'gap') {
      refresh(); // the ring no longer reaches back: the stored alerts fill the hole
    }
  }

  /* Parse the text/event-stream wire format (WHATWG HTML §9.2) from a streamed body. */
  async function readStream(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let type = 'message';
    let data = [];
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length) onEvent(type, data.join('\n'), id);
          type = 'message'; data = []; id = null;
          continue;
        }
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? '' : line.slice(i + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id') id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) live.retryMs = Number(val);
      }
    }
  }

  async function stream(gen) {
    while (!live.stopped && live.gen === gen) {
      live.abort = new AbortController();
      const headers = { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' };
      if (live.lastEventId) headers['Last-Event-ID'] = live.lastEventId;
      try {
        const resp = await fetch('/api/v1/alerts/stream', { headers, signal: live.abort.signal, cache: 'no-store' });
        if (resp.status === 401) { askToken('The token was refused; enter it again.'); return; }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        live.connected = true;
        status('connected', live.events ? `live · ${live.events} alert change(s) since this page opened`
                                        : 'live · waiting for alert changes');
        await readStream(resp);
      } catch (e) {
        if (live.stopped || live.gen !== gen) return;
      }
      live.connected = false;
      status('disconnected', 'alert stream closed; reconnecting');
      await new Promise((r) => setTimeout(r, live.retryMs));
    }
  }

  async function start() {
    $('token-form').classList.add('hidden');
    live.stopped = false;
    live.gen += 1;
    status('', 'loading the views…');
    stream(live.gen); // subscribe first: a change between the model and the stream is then not lost
    try {
      await loadModel();
    } catch (e) {
      if (e.unauthorized) askToken('The token was refused; enter it again.');
      else status('disconnected', `could not load the views: ${e.message}`);
    }
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    if (!t) { $('token-error').textContent = 'Enter the API token (api.token_file of the service).'; return; }
    sessionStorage.setItem(TOKEN_KEY, t);
    start();
  });
  $('forget-token').addEventListener('click', () => askToken('Token forgotten for this tab.'));

  if (token()) start();
  else askToken('');
}());
