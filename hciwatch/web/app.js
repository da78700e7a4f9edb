/* hciwatch operator views: draws a report model (schema hciwatch.report/1) with uPlot.
 *
 * Used twice: inlined into the self-contained file of `hciwatch report` (the model sits in a
 * <script type="application/json" id="hciwatch-model"> block), and by the service's live page,
 * which fetches the model and feeds alert changes from the SSE stream to addAlerts().
 * Incidents, the duplicate-IP owners, congestion marks and the current-alerts table are derived
 * here from alert changes, so a change behaves the same whether it came in the model or live.
 * All times are shown in UTC and say so. Colours: Okabe–Ito; heat strips: viridis.
 */
(function () {
  'use strict';

  const OI = { orange: '#E69F00', sky: '#56B4E9', green: '#009E73', yellow: '#F0E442', blue: '#0072B2',
               vermillion: '#D55E00', purple: '#CC79A7', black: '#000000', grey: '#999999' };
  const SEV_COLOR = { Sev0: OI.vermillion, Sev1: OI.orange, Sev2: OI.purple, Sev3: OI.sky, Sev4: OI.grey };
  const SEV_TEXT = { Sev0: 'critical', Sev1: 'error', Sev2: 'warning', Sev3: 'informational', Sev4: 'verbose' };
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58',
                   '#b5de2b', '#fde725'];
  const RATIO_LOG2_MAX = 6; // 64× the baseline is the brightest cell
  const NO_DATA = '#e4e4e4';
  const MAX_TIMELINE_ROWS = 80;
  const KIND_LABEL = {
    vip_pool_exhaustion: 'VIP pool exhaustion', node_pool_exhaustion: 'node IP pool exhaustion',
    ip_pool_overlap: 'IP pool overlap', duplicate_ip: 'duplicate IP', eastwest_congestion: 'east-west congestion',
    metric_anomaly: 'metric anomaly', source_down: 'source down',
  };

  const state = { model: null, live: [], root: null, charts: [], opts: {}, counts: {} };

  // ------------------------------------------------------------------------------------------
  // small helpers
  // ------------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'class') node.className = v;
      else if (k === 'style') node.style.cssText = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }
  const pad = (n) => String(n).padStart(2, '0');
  function fmtUTC(s, seconds) {
    if (s === null || s === undefined || !isFinite(s)) return '—';
    const d = new Date(s * 1000);
    const base = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
                 `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return (seconds ? `${base}:${pad(d.getUTCSeconds())}` : base) + ' UTC';
  }
  const isoToS = (iso) => (iso ? Date.parse(iso) / 1000 : null);
  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '—';
    const a = Math.abs(v);
    if (Number.isInteger(v) && a < 1e6) return v.toLocaleString('en-US');
    if (a >= 1e6) return (v / 1e6).toFixed(2) + ' M';
    if (a >= 1e4) return Math.round(v).toLocaleString('en-US');
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(digits === undefined ? 2 : digits);
    if (a === 0) return '0';
    return v.toPrecision(3);
  }
  function fmtHours(h) {
    if (h === null || h === undefined || !isFinite(h)) return '—';
    if (h < 48) return `${h.toFixed(1)} h`;
    return `${(h / 24).toFixed(1)} days`;
  }
  const sevRank = (s) => (s && /^Sev\d$/.test(s) ? Number(s[3]) : 9);
  const kindLabel = (k) => KIND_LABEL[k] || k;
  const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC');
  const dpr = () => window.devicePixelRatio || 1;
  function resourceLabel(res) {
    return Object.entries(res || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  }
  function viridis(f) {
    const x = Math.min(1, Math.max(0, f)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const a = hexRgb(VIRIDIS[i]); const b = hexRgb(VIRIDIS[i + 1]); const t = x - i;
    return `rgb(${Math.round(a[0] + (b[0] - a[0]) * t)},${Math.round(a[1] + (b[1] - a[1]) * t)},` +
           `${Math.round(a[2] + (b[2] - a[2]) * t)})`;
  }
  function hexRgb(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }
  function sevBadge(sev) {
    return el('span', { class: `sev sev-${sev}`, title: SEV_TEXT[sev] || '', text: sev });
  }

  // ------------------------------------------------------------------------------------------
  // alert changes → incidents
  // ------------------------------------------------------------------------------------------

  function changeKey(c) { return `${c.fingerprint}|${c.status}|${c.ts}`; }

  function allChanges() {
    const seen = new Set();
    const out = [];
    for (const c of [...((state.model && state.model.alerts) || []), ...state.live]) {
      const k = changeKey(c);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(c);
    }
    out.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : (a.status === 'firing' ? -1 : 1)));
    return out;
  }

  /* One incident per fingerprint and start: a fingerprint that fires again later is a new one. */
  function incidents(changes) {
    const by = new Map();
    const latestByFp = new Map();
    for (const c of changes) {
      const key = `${c.fingerprint}|${c.starts_at}`;
      let inc = by.get(key);
      if (!inc) {
        inc = { key, fingerprint: c.fingerprint, kind: c.kind, resource: c.resource || {}, severity: c.severity,
                start: isoToS(c.starts_at), end: null, status: c.status, summary: c.summary, changes: [],
                evidence: {}, firingEvidence: {}, runbook: '' };
        by.set(key, inc);
      }
      inc.changes.push(c);
      if (sevRank(c.severity) < sevRank(inc.severity)) inc.severity = c.severity;
      inc.status = c.status;
      inc.summary = c.summary;
      inc.lastChange = isoToS(c.ts);
      inc.end = c.status === 'resolved' ? isoToS(c.ends_at || c.ts) : null;
      if (c.evidence && Object.keys(c.evidence).length) {
        inc.evidence = c.evidence;
        if (c.status === 'firing') inc.firingEvidence = c.evidence;
      }
      if (c.runbook) inc.runbook = c.runbook;
      latestByFp.set(c.fingerprint, inc);
    }
    const list = [...by.values()];
    for (const inc of list) inc.current = latestByFp.get(inc.fingerprint) === inc && inc.status === 'firing';
    list.sort((a, b) => a.start - b.start || sevRank(a.severity) - sevRank(b.severity));
    return list;
  }

  function windowOf(changes) {
    const w = state.model.window;
    let to = w.to;
    for (const c of changes) to = Math.max(to, isoToS(c.ts));
    // a live change newer than the data stretches the window, with room to see it at the edge
    if (to > w.to) to += Math.max(w.step_s, (to - w.from) * 0.03);
    return { from: w.from, to, step: w.step_s };
  }

  // ------------------------------------------------------------------------------------------
  // charts
  // ------------------------------------------------------------------------------------------

  function track(u, container, height) {
    state.charts.push({ u, container, height });
    return u;
  }

  function chartWidth(container) {
    return Math.max(320, Math.floor(container.getBoundingClientRect().width || 600));
  }

  /* 24-hour UTC ticks; the date is printed under the first tick of each day. */
  function timeTicks(u, splits) {
    let prevDay = null;
    let prevHm = null;
    // ticks closer than a minute get seconds; a label equal to the one before is left blank
    const step = splits.length > 1 ? splits[1] - splits[0] : 3600;
    return splits.map((s) => {
      const d = new Date(s * 1000);
      const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
      let hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
      if (step < 60) hm += `:${pad(d.getUTCSeconds())}`;
      if (hm === prevHm && day === prevDay) return '';
      const out = day !== prevDay ? `${hm}\n${day}` : hm;
      prevDay = day;
      prevHm = hm;
      return out;
    });
  }

  function timeAxis() {
    return { label: 'time (UTC)', labelSize: 18, stroke: '#333', grid: { stroke: '#eee' }, ticks: { stroke: '#ccc' },
             values: timeTicks, size: 52 };
  }

  /* Rows × time chart drawn on a uPlot canvas (uPlot gives axes, scales and the cursor). */
  function rowsChart(container, spec) {
    const rows = spec.rows;
    const n = Math.max(1, rows.length);
    const rowPx = spec.rowPx || 28;
    const height = spec.height || Math.max(110, 64 + n * rowPx);
    const longest = rows.reduce((m, r) => Math.max(m, String(r).length), 4);
    const ySize = Math.min(330, 24 + Math.min(48, longest) * 6.6);
    const readout = spec.readout;
    const opts = {
      width: chartWidth(container), height, tzDate,
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: false, y: false } },
      // row r is drawn at y = n − 1 − r, so the first row is on top
      scales: { x: { time: true, range: () => [spec.xMin, spec.xMax] },
                y: { range: () => [-0.5, n - 0.5] } },
      axes: [timeAxis(), {
        size: ySize, gap: 4, stroke: '#333', grid: { show: false }, ticks: { show: false },
        splits: () => rows.map((_, i) => i),
        values: (u, splits) => splits.map((v) => {
          const r = n - 1 - Math.round(v);
          const s = String(rows[r] === undefined ? '' : rows[r]);
          return s.length > 48 ? s.slice(0, 47) + '…' : s;
        }),
        label: spec.yLabel || '', labelSize: spec.yLabel ? 18 : 0,
      }],
      series: [{}, { label: spec.seriesLabel || 'rows', stroke: 'rgba(0,0,0,0)', points: { show: false } }],
      hooks: {
        draw: [(u) => spec.draw(u, rowGeometry(u, n))],
        setCursor: [(u) => {
          if (!readout) return;
          const { left, top } = u.cursor;
          if (left === undefined || left < 0 || top === undefined || top < 0) { readout.textContent = ' '; return; }
          const t = u.posToVal(left, 'x');
          const row = n - 1 - Math.round(u.posToVal(top, 'y'));
          readout.textContent = (spec.describe && spec.describe(row, t)) || ' ';
        }],
      },
    };
    const u = new uPlot(opts, [[spec.xMin, spec.xMax], [null, null]], container);
    container.setAttribute('role', 'img');
    container.setAttribute('aria-label', `${spec.seriesLabel || 'rows'} by ${spec.yLabel || 'row'} over time (UTC): ` +
                                         rows.join(', '));
    return track(u, container, height);
  }

  function rowGeometry(u, n) {
    const y0 = u.valToPos(0, 'y', true);
    const y1 = u.valToPos(1, 'y', true);
    return { rowH: Math.abs(y1 - y0), x: (t) => u.valToPos(t, 'x', true), y: (r) => u.valToPos(n - 1 - r, 'y', true) };
  }

  function clipToPlot(u, ctx) {
    const b = u.bbox;
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
  }

  // ------------------------------------------------------------------------------------------
  // header
  // ------------------------------------------------------------------------------------------

  function renderHeader(m, win) {
    const c = m.collected || { sources: [] };
    const title = m.site ? `hciwatch — ${m.site}` : 'hciwatch — operator views';
    const sub = el('div', { class: 'sub' },
      `Window ${fmtUTC(win.from)} → ${fmtUTC(win.to)} · series in ${Math.round(win.step / 60)}-minute buckets · ` +
      `model built ${fmtUTC(isoToS(m.generated_at), true)}` + (m.data_dir ? ` from ${m.data_dir}/` : ''));
    const table = el('table', { class: 'grid', id: 'collected-table' },
      el('thead', {}, el('tr', {}, ['source', 'targets', 'samples', 'IP observations', 'first record (UTC)',
                                    'last record (UTC)'].map((h) => el('th', { text: h })))),
      el('tbody', {}, c.sources.map((s) => el('tr', { 'data-source': s.source },
        el('td', { text: s.source }),
        el('td', { title: (s.targets || []).join(', '), text: `${(s.targets || []).length}` +
                   ((s.targets || []).length ? ` (${s.targets.slice(0, 4).join(', ')}` +
                    `${s.targets.length > 4 ? ', …' : ''})` : '') }),
        el('td', { class: 'num', text: fmtNum(s.samples) }),
        el('td', { class: 'num', text: fmtNum(s.ip_observations) }),
        el('td', { text: s.first ? fmtUTC(isoToS(s.first), true).replace(' UTC', '') : '—' }),
        el('td', { text: s.last ? fmtUTC(isoToS(s.last), true).replace(' UTC', '') : '—' })))));
    let ingest;
    if (c.ingest) {
      const g = c.ingest;
      const reasons = Object.entries(g.reject_reasons || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
      ingest = el('p', { class: 'note', id: 'parse-errors' },
        `Parse errors: ${fmtNum(g.records_rejected || 0)} record(s) rejected` + (reasons ? ` (${reasons})` : '') +
        `, ${fmtNum(g.skipped_parts || 0)} bad part(s) skipped inside payloads, of ${fmtNum(g.records_read || 0)} ` +
        `records read — from ${g.origin}.`);
      const kinds = Object.entries(g.records_by_kind || {}).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ');
      if (kinds) ingest.append(` Records by kind: ${kinds}.`);
      if ((g.rejected || []).length) {
        ingest.append(el('details', {}, el('summary', { text: `first ${g.rejected.length} rejected record(s) / ` +
                                                             'skipped part(s)' }),
          el('ul', {}, g.rejected.map((msg) => el('li', { text: msg })))));
      }
    } else {
      ingest = el('p', { class: 'note', id: 'parse-errors' },
        'Parse errors: not recorded with this data (the service counts them at /metrics: ' +
        'hciwatch_records_rejected, hciwatch_parse_skipped_parts).');
    }
    let health = null;
    const targets = (c.ingest && c.ingest.targets) || null;
    if (targets) {
      const down = targets.filter((t) => t.state !== 'up').length;
      health = el('div', { id: 'target-health-view' },
        el('h3', { text: `Targets: ${targets.length - down} up, ${down} not up` }),
        el('table', { class: 'grid', id: 'target-health', 'data-down': down },
          el('thead', {}, el('tr', {}, ['source', 'target', 'state', 'last success (UTC)', 'last attempt (UTC)',
                                        'failed in a row', 'parse errors', 'last error']
            .map((h) => el('th', { text: h })))),
          el('tbody', {}, targets.map((t) => el('tr', { 'data-target': t.target, 'data-state': t.state },
            el('td', { text: t.source }), el('td', { text: t.target }),
            el('td', { class: t.state === 'up' ? '' : 'down', text: t.state }),
            el('td', { text: t.last_success ? fmtUTC(isoToS(t.last_success), true).replace(' UTC', '') : 'never' }),
            el('td', { text: t.last_attempt ? fmtUTC(isoToS(t.last_attempt), true).replace(' UTC', '') : '—' }),
            el('td', { class: 'num', text: fmtNum(t.consecutive_failures || 0, 0) }),
            el('td', { class: 'num', text: fmtNum(t.parse_errors || 0, 0) }),
            el('td', { text: t.last_error || '' }))))));
    }
    return el('header', { class: 'top', id: 'view-header', 'data-sources': c.sources.length },
      el('h1', { text: title }), sub, health,
      el('p', { class: 'note' }, `Collected in the window: ${c.sources.length} source(s), ${fmtNum(c.targets || 0)} ` +
         `target(s), ${fmtNum(c.samples || 0)} samples, ${fmtNum(c.ip_observations || 0)} IP observations.`),
      table, ingest);
  }


  // ------------------------------------------------------------------------------------------
  // status banner: what is wrong now and what to do first
  // ------------------------------------------------------------------------------------------

  const KIND_VIEW = { vip_pool_exhaustion: 'view-pools', node_pool_exhaustion: 'view-pools',
                      ip_pool_overlap: 'view-pools', duplicate_ip: 'view-duplicates',
                      eastwest_congestion: 'view-congestion' };

  /* The runbook's first numbered step (its continuation lines joined), else its first line. */
  function firstStep(runbook) {
    const lines = (runbook || '').split('\n');
    const i = lines.findIndex((l) => /^\s*1[.)]\s+/.test(l));
    if (i < 0) return (lines.find((l) => l.trim()) || '').trim();
    const out = [lines[i].replace(/^\s*1[.)]\s+/, '').trim()];
    for (const l of lines.slice(i + 1)) {
      if (!l.trim() || /^\s*\d+[.)]\s+/.test(l) || !/^\s/.test(l)) break;
      out.push(l.trim());
    }
    return out.join(' ');
  }

  /* Numbers as they are now where the model has them (pools), else when the alert text was written. */
  function currentNumbers(inc, m) {
    if (inc.kind === 'vip_pool_exhaustion' || inc.kind === 'node_pool_exhaustion') {
      const want = inc.resource.pool || (inc.kind === 'vip_pool_exhaustion' ? 'vip' : 'node');
      const p = (m.pools || []).find((x) => x.network === inc.resource.network && x.pool === want);
      if (p && p.t && p.t.length) {
        return `Now ${fmtNum(p.used, 0)}/${fmtNum(p.size, 0)} used, ${fmtNum(p.free, 0)} free ` +
               `(as of ${fmtUTC(p.t[p.t.length - 1])}).`;
      }
    }
    return null;
  }

  /* Shell-style wildcards of a silence matcher (the service's fnmatch). */
  function globRe(p) {
    return new RegExp('^' + String(p).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')
      .replace(/\?/g, '.') + '$');
  }

  function silenceMatches(s, inc) {
    return Object.entries(s.matchers || {}).every(([k, v]) => {
      const re = globRe(v);
      if (k === 'resource') return Object.values(inc.resource).some((x) => re.test(String(x)));
      if (k === 'kind' || k === 'severity' || k === 'status') return re.test(String(inc[k]));
      return k in inc.resource && re.test(String(inc.resource[k]));
    });
  }

  /* The active silence covering an incident, if any (silenced alerts are stored and shown, not paged). */
  function silencedBy(m, inc) {
    return (m.silences || []).find((s) => s.active_now && silenceMatches(s, inc)) || null;
  }

  function renderSilences(m) {
    const active = (m.silences || []).filter((s) => s.active_now);
    if (!active.length) return null;
    return el('div', { class: 'silences', id: 'active-silences', 'data-active': active.length },
      el('b', { text: `${active.length} silence(s) active (maintenance windows; matching alerts page nobody): ` }),
      el('ul', {}, active.map((s) => el('li', { 'data-silence': s.id },
        `${Object.entries(s.matchers).map(([k, v]) => `${k}=${v}`).join(', ')} until ${fmtUTC(isoToS(s.ends_at))}` +
        ` — ${s.comment}` + (s.suppressed && s.suppressed.length ? ` (${s.suppressed.length} change(s) held back)` : '') +
        ` [id ${s.id}]`))));
  }

  function renderStatus(m, incs) {
    const live = incs.filter((i) => i.current);
    const silenced = live.filter((i) => silencedBy(m, i));
    const current = live.filter((i) => !silencedBy(m, i)).sort((a, b) => sevRank(a.severity) - sevRank(b.severity) ||
                                                                          b.lastChange - a.lastChange);
    const resolved = incs.filter((i) => i.status === 'resolved').length;
    const bySev = {};
    for (const i of current) bySev[i.severity] = (bySev[i.severity] || 0) + 1;
    const worst = current.length ? current[0].severity : null;
    const sec = el('section', { class: `status-banner ${worst ? 'firing sev-border-' + worst : 'ok'}`,
                                id: 'status-banner', 'data-firing': current.length, role: 'status' });
    const silenceNote = silenced.length ? el('p', { class: 'note', id: 'silenced-firing',
      text: `${silenced.length} more firing but silenced: ` +
            silenced.map((i) => `${kindLabel(i.kind)} · ${resourceLabel(i.resource)} (silence ` +
                                `${silencedBy(m, i).id})`).join('; ') }) : null;
    if (!current.length) {
      sec.append(el('h2', { text: 'Nothing is firing' }),
        el('p', { class: 'note', text: `${resolved} incident(s) resolved in this window; see Alerts for the timeline.` }),
        silenceNote, renderSilences(m));
      return sec;
    }
    const counts = ['Sev0', 'Sev1', 'Sev2', 'Sev3', 'Sev4'].filter((s) => bySev[s])
      .map((s) => `${bySev[s]} ${s} (${SEV_TEXT[s]})`).join(', ');
    sec.append(el('h2', { text: `${current.length} alert(s) firing now: ${counts}` }));
    const list = el('ol', { class: 'status-list' });
    for (const i of current.slice(0, 8)) {
      const now = currentNumbers(i, m);
      const step = firstStep(i.runbook);
      const target = KIND_VIEW[i.kind] || 'view-alerts';
      list.append(el('li', { 'data-fingerprint': i.fingerprint, 'data-kind': i.kind },
        sevBadge(i.severity), ' ', el('b', { text: `${kindLabel(i.kind)} · ${resourceLabel(i.resource)}` }),
        ` — firing since ${fmtUTC(i.start)}. `,
        el('a', { href: `#${target}`, text: 'details ↓' }),
        el('div', { class: 'status-summary' }, `${i.summary} `,
           el('span', { class: 'asof', text: `(text as of ${fmtUTC(i.lastChange)})` })),
        now ? el('div', { class: 'status-now', text: now }) : null,
        step ? el('div', { class: 'status-step' }, el('b', { text: 'First step: ' }), step) : null));
    }
    sec.append(list);
    if (current.length > 8) {
      sec.append(el('p', { class: 'note', text: `${current.length - 8} more in Alerts → Current alerts.` }));
    }
    sec.append(...[silenceNote, renderSilences(m)].filter(Boolean));
    return sec;
  }

  // ------------------------------------------------------------------------------------------
  // pools
  // ------------------------------------------------------------------------------------------

  // which of the detector's estimators set the forecast (the same verdict a pool alert carries)
  const TREND_METHOD = {
    'theil-sen': ', Theil–Sen line',
    'growth-run': ', growth run (rate of the recent run of allocations)',
    none: ', not significantly rising',
  };

  const TREND_LABEL = { 'theil-sen': 'Theil–Sen', 'growth-run': 'growth run', none: 'not rising' };

  function poolFacts(p, alerts) {
    const facts = el('p', { class: 'facts' });
    facts.append(`Now ${fmtNum(p.used, 0)} of ${fmtNum(p.size, 0)} addresses used, ${fmtNum(p.free, 0)} free; ` +
                 `upgrade reserve ${fmtNum(p.reserve, 0)}. `);
    if (p.below_reserve) {
      facts.append(el('b', { text: `Below the reserve since ${fmtUTC(p.below_reserve_since)}. ` }));
    }
    const tr = p.trend;
    if (tr) {
      facts.append(`Trend ${tr.slope_per_day >= 0 ? '+' : ''}${fmtNum(tr.slope_per_day)} addresses/day ` +
                   `(${Math.round(p.confidence * 100)} %: ${fmtNum(tr.slope_per_day_low)} … ` +
                   `${fmtNum(tr.slope_per_day_high)}) over the last ${fmtNum(tr.window_hours, 1)} h` +
                   `${TREND_METHOD[tr.method] || ''}. `);
      const rc = p.reserve_crossing || {};
      if (rc.at !== null && rc.at !== undefined) {
        const range = rc.latest ? `${fmtUTC(rc.earliest)} … ${fmtUTC(rc.latest)}` :
          `not before ${fmtUTC(rc.earliest)}; the low bound of the trend is flat, so possibly never`;
        facts.append(el('b', { class: 'crossing', text: `Crosses the upgrade reserve ${fmtUTC(rc.at)}` }),
                     ` (${range}). `);
      } else {
        facts.append('Not forecast to reach the reserve (the trend is not rising). ');
      }
      const ex = p.exhaustion || {};
      if (ex.at !== null && ex.at !== undefined && !(rc.at === ex.at)) {
        facts.append(`Exhausted ${fmtUTC(ex.at)}. `);
      }
    } else if (p.trend_note) {
      facts.append(p.trend_note + '. ');
    }
    for (const a of alerts) {
      facts.append(el('br'), el('span', { class: a.current ? 'alert-line firing' : 'alert-line resolved' },
        sevBadge(a.severity), ` ${a.current ? 'firing' : 'resolved'}: ${a.summary} `,
        el('span', { class: 'asof', text: `(alert text as of its last change, ${fmtUTC(a.lastChange)}; ` +
                                          'the numbers above are current)' })));
    }
    return facts;
  }

  function poolChart(container, p, win) {
    const fc = p.forecast;
    const xs = [...new Set([...p.t, ...(fc ? fc.t : [])])].sort((a, b) => a - b);
    const hi = new Map(p.t.map((t, i) => [t, i]));
    const fi = new Map((fc ? fc.t : []).map((t, i) => [t, i]));
    const hist = (arr) => xs.map((t) => (hi.has(t) ? arr[hi.get(t)] : null));
    const future = (arr) => xs.map((t) => (fi.has(t) ? arr[fi.get(t)] : null));
    const limitNow = p.size - p.reserve;
    const size = xs.map((t) => (hi.has(t) ? p.size_s[hi.get(t)] : (fi.has(t) ? p.size : null)));
    const limit = xs.map((t) => (hi.has(t) ? p.limit_s[hi.get(t)] : (fi.has(t) ? limitNow : null)));
    const tr = p.trend;
    const trend = xs.map((t) => (tr && t >= tr.t0 && t <= tr.t1
      ? tr.y0 + (tr.y1 - tr.y0) * (t - tr.t0) / ((tr.t1 - tr.t0) || 1) : null));
    const none = xs.map(() => null);
    // drawn in this order, so the observed usage is on top of the lines fitted to it
    const data = [xs, size, limit, fc ? future(fc.lo) : none, fc ? future(fc.hi) : none, trend,
                  fc ? future(fc.mid) : none, hist(p.used_s)];
    const v0 = (u, v) => (v === null || v === undefined ? '—' : fmtNum(v, 1));
    const rc = p.reserve_crossing;
    const height = 260;
    const opts = {
      width: chartWidth(container), height, tzDate,
      legend: { live: false },
      scales: { x: { time: true }, y: { range: () => [0, Math.max(1, p.size) * 1.08] } },
      axes: [timeAxis(), { label: 'addresses', labelSize: 18, stroke: '#333', grid: { stroke: '#eee' } }],
      series: [
        { label: 'time (UTC)' },
        { label: 'pool size (addresses)', stroke: OI.black, width: 1.5, dash: [6, 4], value: v0 },
        { label: 'reserve line: size − reserve', stroke: OI.vermillion, width: 2, dash: [2, 3], value: v0 },
        { label: `forecast ${Math.round(p.confidence * 100)} % low`, stroke: OI.sky, width: 1, value: v0 },
        { label: `forecast ${Math.round(p.confidence * 100)} % high`, stroke: OI.sky, width: 1, value: v0 },
        { label: `trend (${TREND_LABEL[tr ? tr.method : 'none'] || 'fitted line'})`, stroke: OI.orange, width: 2,
          value: v0 },
        { label: 'forecast (median)', stroke: OI.orange, width: 2, dash: [9, 5], value: v0 },
        { label: 'used (addresses)', stroke: OI.blue, width: 2.5, paths: uPlot.paths.stepped({ align: 1 }), value: v0 },
      ],
      bands: [{ series: [4, 3], fill: 'rgba(86,180,233,0.28)' }],
      hooks: {
        draw: [(u) => {
          if (!rc || rc.at === null || rc.at === undefined) return;
          const [x0, x1] = [u.scales.x.min, u.scales.x.max];
          if (rc.at < x0 || rc.at > x1) return;
          const ctx = u.ctx;
          ctx.save();
          clipToPlot(u, ctx);
          const x = u.valToPos(rc.at, 'x', true);
          ctx.strokeStyle = OI.vermillion;
          ctx.lineWidth = 1.5 * dpr();
          ctx.setLineDash([4 * dpr(), 3 * dpr()]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.font = `${11 * dpr()}px sans-serif`;
          ctx.textAlign = 'left'; // uPlot leaves the y axis's 'right' alignment on the context
          const label = `${rc.at > p.last_t ? 'forecast to cross the reserve' : 'reserve crossed'} ${fmtUTC(rc.at)}`;
          const w = ctx.measureText(label).width;
          const lx = Math.max(u.bbox.left + 2, x - w - 6 * dpr());
          const ly = u.bbox.top + u.bbox.height - 8 * dpr();
          ctx.fillStyle = 'rgba(255,255,255,0.9)';
          ctx.fillRect(lx - 2 * dpr(), ly - 11 * dpr(), w + 4 * dpr(), 14 * dpr());
          ctx.fillStyle = OI.vermillion;
          ctx.fillText(label, lx, ly);
          ctx.restore();
        }],
      },
    };
    const u = new uPlot(opts, data, container);
    container.setAttribute('data-series', String(opts.series.length - 1));
    container.setAttribute('role', 'img');
    container.setAttribute('aria-label', `${p.network} ${p.pool} pool: addresses used, pool size, reserve line, ` +
                                         'trend and forecast band over time (UTC)');
    return track(u, container, height);
  }

  function renderPools(m, incs, win) {
    const sec = el('section', { class: 'view', id: 'view-pools' },
      el('h2', { text: 'IP pools: used, reserve and size over time, trend and forecast' }),
      el('p', { class: 'note', text: 'Per cluster network and pool. The forecast extends the pool detector\'s own trend ' +
        '(its Theil–Sen line or, for step-shaped growth, the growth-run rate, over its trend window) from the ' +
        'last observation; the band is its confidence interval. The reserve line is where the upgrade reserve ' +
        'begins (size − reserve).' }));
    const pools = m.pools || [];
    sec.setAttribute('data-pools', String(pools.length));
    if (!pools.length) {
      sec.append(el('p', { class: 'empty', text: 'No pool usage in this window (no configured networks, or no ' +
                                                  'inventory observed).' }));
      return { sec, after: [] };
    }
    const cards = el('div', { class: 'cards' });
    const after = [];
    for (const p of pools) {
      const poolAlerts = incs.filter((i) => /_pool_exhaustion$/.test(i.kind) && i.resource.network === p.network &&
                                            i.resource.pool === p.pool);
      const chart = el('div', { class: 'chart pool-chart', 'data-network': p.network, 'data-pool': p.pool });
      cards.append(el('div', { class: 'card' },
        el('h3', { text: `${p.network} · ${p.pool} pool (${p.pool_type})` }), poolFacts(p, poolAlerts), chart));
      after.push(() => poolChart(chart, p, win));
    }
    sec.append(cards);
    return { sec, after };
  }

  // ------------------------------------------------------------------------------------------
  // duplicate IPs
  // ------------------------------------------------------------------------------------------

  /* MACs whose other addresses (in neighbour tables) belong to exactly this cluster. */
  function attributedMacs(clusters) {
    const attr = (state.model && state.model.mac_attribution) || {};
    return Object.keys(attr).filter((mac) => attr[mac].clusters.length === 1 &&
                                             clusters.includes(attr[mac].clusters[0]));
  }

  function ownerRows(ev) {
    const macOwners = ev.mac_owners || {};
    const attr = (state.model && state.model.mac_attribution) || {};
    const rows = (ev.owners || []).map((o) => {
      const kinds = o.owner_kinds || [];
      const clusters = o.clusters || [];
      const m = /^cluster (\S+) \((.*)\)$/.exec(o.claimant || '');
      let services = Object.keys(o.ports || {}).map((k) => {
        const c = clusters.find((cl) => k.startsWith(cl + '/'));
        return c ? k.slice(c.length + 1) : k;
      });
      if (!services.length && m && (kinds.includes('service') || kinds.includes('control-plane'))) {
        services = m[2].split(', ');
      }
      let node = '';
      if (kinds.includes('node') || kinds.includes('load-balancer')) node = (o.owners || []).join(', ');
      else if (kinds.includes('nic')) node = [...new Set((o.owners || []).map((x) => x.split('/')[0]))].join(', ');
      let macs = o.macs || [];
      let via = '';
      if (!macs.length) macs = Object.keys(macOwners).filter((mac) => macOwners[mac] === o.claimant);
      if (!macs.length && clusters.length) {
        macs = attributedMacs(clusters).filter((mac) => (ev.macs_answering || []).includes(mac) ||
                                                        !(ev.macs_answering || []).length);
        if (macs.length) via = ' (by neighbour tables)';
      }
      if (!node) {
        node = [...new Set(macs.flatMap((mac) => (attr[mac] ? attr[mac].vms : [])))].join(', ');
        if (!node && via && kinds.includes('haproxy-frontend')) node = `HAProxy load-balancer VM of ${clusters.join(', ')}`;
      }
      return { claimant: o.claimant, cluster: clusters.join(', '), service: services.join(', '), node,
               macs: macs.join(', ') + (macs.length ? via : ''), ports: Object.values(o.ports || {}).join('; '), kinds: kinds.join(', '),
               first: isoToS(o.first_seen), last: isoToS(o.last_seen), sources: (o.sources || []).join(', ') };
    });
    if (!rows.length) {
      for (const mac of ev.macs_answering || []) {
        rows.push({ claimant: macOwners[mac] || 'unknown owner', cluster: '', service: '', node: '', macs: mac,
                    ports: '', kinds: 'neighbor', first: null, last: null, sources: 'neighbors' });
      }
    }
    return rows;
  }

  function evidenceList(ev) {
    const items = [];
    if ((ev.evidence_types_seen || ev.evidence_types || []).length) {
      items.push(`evidence: ${(ev.evidence_types_seen || ev.evidence_types).join(', ').replace(/_/g, ' ')}`);
    }
    for (const o of ev.overlaps || []) items.push(`${o.a} and ${o.b} held it together for ${o.seconds_held_together} s`);
    const flips = ev.arp_flip_flops || {};
    for (const [observer, list] of Object.entries(flips)) {
      items.push(`ARP flip-flops seen by ${observer}: ${list.length} (last ${fmtUTC(isoToS(list[list.length - 1].at))})`);
    }
    if ((ev.macs_answering || []).length) {
      items.push('MACs answering: ' + ev.macs_answering.map((m) => (ev.mac_owners && ev.mac_owners[m]
        ? `${m} (${ev.mac_owners[m]})` : m)).join(', '));
      const attr = (state.model && state.model.mac_attribution) || {};
      for (const m of ev.macs_answering) {
        const a = attr[m];
        if (!a || !a.also_answers_for.length) continue;
        items.push(`${m} also answers for ${a.also_answers_for.join(', ')}` +
                   (a.clusters.length ? `, held by cluster ${a.clusters.join(', ')}` : '') +
                   (a.vms.length ? ` (${a.vms.join(', ')})` : ''));
      }
    }
    for (const e of ev.tcpip_events || []) {
      items.push(`Tcpip conflict event on ${e.host} at ${fmtUTC(isoToS(e.at))}` +
                 (e.conflicting_mac ? ` (MAC ${e.conflicting_mac})` : ''));
    }
    if (ev.different_ports) items.push('the owners use different ports on the IP (the documented HAProxy case)');
    if (ev.neighbor_latest) {
      const nb = ev.neighbor_latest;
      items.push(`latest neighbour entry: ${nb.mac} at ${fmtUTC(isoToS(nb.at))} seen by ` +
                 `${(nb.observers || []).length} observer(s)`);
    }
    return items;
  }

  function renderDuplicates(m, incs, win) {
    const dups = incs.filter((i) => i.kind === 'duplicate_ip');
    const sec = el('section', { class: 'view', id: 'view-duplicates', 'data-incidents': dups.length },
      el('h2', { text: 'Duplicate IP incidents' }),
      el('p', { class: 'note', text: 'Each bar is an incident from the duplicate_ip detector (fired → resolved, ' +
        'open-ended while firing); ticks mark 5-minute buckets in which the ip_conflicts view saw two ' +
        'claimants, two MACs in neighbour tables, or a Tcpip conflict event for that IP.' }));
    if (!dups.length) {
      sec.append(el('p', { class: 'empty', text: 'No duplicate IP incident in this window.' }));
      return { sec, after: [] };
    }
    const rows = dups.map((d) => `${d.resource.ip || '?'} @ ${d.resource.network || '?'}`);
    const sightings = new Map((m.conflicts || []).map((c) => [c.ip, c]));
    const legend = el('div', { class: 'legend' },
      ...['Sev0', 'Sev1', 'Sev2', 'Sev3'].map((s) => el('span', {},
        el('span', { class: 'sw', style: `background:${SEV_COLOR[s]}` }), `${s} incident`)),
      el('span', {}, el('span', { class: 'sw line', style: 'border-color:#000' }), 'conflict seen (ip_conflicts)'),
      el('span', {}, 'time axis: UTC'));
    const chart = el('div', { class: 'chart timeline-chart', id: 'duplicates-timeline', 'data-series': dups.length });
    const readout = el('div', { class: 'readout', text: ' ' });
    sec.append(legend, chart, readout);
    for (const d of dups) {
      const ev = Object.keys(d.firingEvidence).length ? d.firingEvidence : d.evidence;
      const owners = ownerRows(ev);
      const box = el('div', { class: `incident ${d.status === 'firing' ? 'firing' : 'resolved'}`,
                              'data-fingerprint': d.fingerprint,
                              style: `border-left-color:${d.status === 'firing' ? SEV_COLOR[d.severity] || OI.grey
                                                                                  : '#bbb'}` },
        el('h3', {}, sevBadge(d.severity), ` ${d.resource.ip || ''} on ${d.resource.network || ''} — ` +
           `${d.status === 'firing' ? 'firing' : 'resolved'}, ${fmtUTC(d.start)} → ` +
           `${d.end ? fmtUTC(d.end) : 'now'}`),
        el('p', { class: 'facts', text: d.summary }),
        el('table', { class: 'grid owners' },
          el('thead', {}, el('tr', {}, ['owner', 'cluster', 'namespace/service', 'node / VM / host', 'MAC', 'ports',
                                        'first seen (UTC)', 'last seen (UTC)', 'seen by'].map((h) => el('th', { text: h })))),
          el('tbody', {}, owners.map((o) => el('tr', {},
            el('td', { text: o.claimant }), el('td', { text: o.cluster || '—' }), el('td', { text: o.service || '—' }),
            el('td', { text: o.node || '—' }), el('td', { text: o.macs || '—' }), el('td', { text: o.ports || '—' }),
            el('td', { text: o.first ? fmtUTC(o.first, true).replace(' UTC', '') : '—' }),
            el('td', { text: o.last ? fmtUTC(o.last, true).replace(' UTC', '') : '—' }),
            el('td', { text: o.sources || '—' }))))),
        el('ul', {}, evidenceList(ev).map((t) => el('li', { text: t }))),
        el('details', { class: 'evidence' }, el('summary', { text: 'evidence (JSON, as the alert carries it)' }),
          el('pre', { text: JSON.stringify(ev, null, 2) })));
      sec.append(box);
    }
    const describe = (row, t) => {
      const d = dups[row];
      if (!d) return ' ';
      return `${rows[row]} · ${d.severity} · ${fmtUTC(d.start)} → ${d.end ? fmtUTC(d.end) : 'still firing'} · ` +
             `cursor ${fmtUTC(t)}`;
    };
    const after = [() => rowsChart(chart, {
      rows, xMin: win.from, xMax: win.to, readout, describe, rowPx: 44, seriesLabel: 'incidents',
      draw: (u, g) => {
        const ctx = u.ctx;
        ctx.save();
        clipToPlot(u, ctx);
        dups.forEach((d, r) => {
          const x0 = g.x(Math.max(d.start, win.from));
          const x1 = g.x(d.end === null ? win.to : Math.min(d.end, win.to));
          const yc = g.y(r);
          const h = g.rowH * 0.5;
          ctx.fillStyle = SEV_COLOR[d.severity] || OI.grey;
          ctx.fillRect(x0, yc - h / 2, Math.max(2 * dpr(), x1 - x0), h);
          ctx.strokeStyle = '#000';
          ctx.lineWidth = dpr();
          ctx.strokeRect(x0, yc - h / 2, Math.max(2 * dpr(), x1 - x0), h);
          const s = sightings.get(d.resource.ip);
          if (s) {
            ctx.strokeStyle = '#000';
            ctx.lineWidth = 1.5 * dpr();
            for (const t of s.t) {
              if (t < win.from || t > win.to) continue;
              const x = g.x(t + 150);
              ctx.beginPath();
              ctx.moveTo(x, yc + h / 2 + 1 * dpr());
              ctx.lineTo(x, yc + h / 2 + 6 * dpr());
              ctx.stroke();
            }
          }
        });
        ctx.restore();
      },
    })];
    return { sec, after };
  }

  // ------------------------------------------------------------------------------------------
  // east-west congestion heat strips
  // ------------------------------------------------------------------------------------------

  function congestionIncidents(incs) {
    return incs.filter((i) => i.kind === 'eastwest_congestion').map((i) => {
      const ev = Object.keys(i.firingEvidence).length ? i.firingEvidence : i.evidence;
      const hosts = (ev.hosts && ev.hosts.length) ? ev.hosts : [i.resource.host].filter(Boolean);
      const start = isoToS(ev.onset) || i.start;
      const end = i.end === null ? null : (isoToS(i.evidence.ended || i.evidence.condition_cleared_at) || i.end);
      return { inc: i, hosts, start, end };
    });
  }

  function heatChart(container, cg, sig, marks, win, readout) {
    const hosts = cg.hosts;
    const step = cg.step_s;
    const describe = (row, t) => {
      if (row < 0 || row >= hosts.length) return ' ';
      const k = Math.floor((t - cg.t[0]) / step);
      const v = k >= 0 && k < cg.t.length ? sig.values[row][k] : null;
      const base = sig.baseline[row];
      const ratio = v === null || v === undefined ? null : v / Math.max(base || 0, sig.floor);
      return `${hosts[row]} · ${fmtUTC(k >= 0 && k < cg.t.length ? cg.t[k] : t)} · ${sig.label}: ` +
             `${fmtNum(v)} ${sig.unit} · baseline ${fmtNum(base)} ${sig.unit}` +
             (ratio === null ? '' : ` · ${fmtNum(ratio, 1)}× baseline`);
    };
    return rowsChart(container, {
      rows: hosts, xMin: win.from, xMax: win.to, rowPx: 30, readout, describe, yLabel: 'HCI host',
      seriesLabel: sig.label,
      draw: (u, g) => {
        const ctx = u.ctx;
        ctx.save();
        clipToPlot(u, ctx);
        hosts.forEach((h, r) => {
          const base = Math.max(sig.baseline[r] || 0, sig.floor);
          const yc = g.y(r);
          const hh = g.rowH * 0.86;
          for (let k = 0; k < cg.t.length; k++) {
            const v = sig.values[r][k];
            const x0 = g.x(cg.t[k]);
            const x1 = g.x(cg.t[k] + step);
            if (v === null || v === undefined) ctx.fillStyle = NO_DATA;
            else ctx.fillStyle = viridis(Math.log2(Math.max(1, v / base)) / RATIO_LOG2_MAX);
            ctx.fillRect(x0, yc - hh / 2, Math.max(1, x1 - x0 + 0.5), hh);
          }
        });
        for (const mk of marks) {
          const x0 = g.x(Math.max(mk.start, win.from));
          const x1 = g.x(mk.end === null ? win.to : Math.min(mk.end, win.to));
          for (const host of mk.hosts) {
            const r = hosts.indexOf(host);
            if (r < 0) continue;
            const yc = g.y(r);
            const hh = g.rowH * 0.96;
            ctx.lineWidth = 4 * dpr();
            ctx.strokeStyle = '#ffffff';
            ctx.strokeRect(x0, yc - hh / 2, Math.max(3, x1 - x0), hh);
            ctx.lineWidth = 2 * dpr();
            ctx.strokeStyle = '#000000';
            ctx.setLineDash([5 * dpr(), 3 * dpr()]);
            ctx.strokeRect(x0, yc - hh / 2, Math.max(3, x1 - x0), hh);
            ctx.setLineDash([]);
          }
        }
        ctx.restore();
      },
    });
  }

  function rampLegend(sig) {
    const stops = VIRIDIS.map((c, i) => `${c} ${Math.round(i / (VIRIDIS.length - 1) * 100)}%`).join(', ');
    return el('div', { class: 'legend' },
      el('span', {}, '≤1×'), el('span', { class: 'ramp', style: `background:linear-gradient(to right, ${stops})` }),
      el('span', {}, `≥${2 ** RATIO_LOG2_MAX}× the host's baseline (log scale; ${sig.unit}, floor ${sig.floor} ${sig.unit})`),
      el('span', {}, el('span', { class: 'sw', style: `background:${NO_DATA}` }), 'no data'),
      el('span', {}, el('span', { class: 'sw outline' }), 'east-west congestion alert'),
      el('span', {}, 'time axis: UTC'));
  }

  function renderCongestion(m, incs, win) {
    const cg = m.congestion || { hosts: [], signals: [], t: [] };
    const marks = congestionIncidents(incs);
    const sec = el('section', { class: 'view', id: 'view-congestion', 'data-hosts': cg.hosts.length,
                                'data-incidents': marks.length },
      el('h2', { text: 'East-west congestion: pause frames and SMB latency against each host\'s baseline' }),
      el('p', { class: 'note', text: `Each cell is one ${Math.round(cg.step_s / 60)}-minute bucket of one HCI host, ` +
        `coloured by its value divided by that host's baseline (${cg.baseline_method || 'median'}). Dashed ` +
        'outlines mark eastwest_congestion alerts on the hosts they name.' }));
    if (!cg.hosts.length) {
      sec.append(el('p', { class: 'empty', text: 'No PFC or SMB client counters in this window.' }));
      return { sec, after: [] };
    }
    const after = [];
    for (const sig of cg.signals) {
      const chart = el('div', { class: 'chart heat-chart', 'data-signal': sig.key, 'data-series': cg.hosts.length,
                                'data-incidents': marks.length });
      const readout = el('div', { class: 'readout', text: ' ' });
      const base = cg.hosts.map((h, i) => `${h} ${fmtNum(sig.baseline[i])} ${sig.unit}`).join(' · ');
      sec.append(el('h3', { text: `${sig.label}, ${sig.unit}` }), rampLegend(sig),
                 el('p', { class: 'note', text: `Baselines: ${base}` }), chart, readout);
      after.push(() => heatChart(chart, cg, sig, marks, win, readout));
    }
    return { sec, after };
  }

  // ------------------------------------------------------------------------------------------
  // alerts
  // ------------------------------------------------------------------------------------------

  function renderAlerts(m, incs, win) {
    const current = incs.filter((i) => i.current).sort((a, b) => sevRank(a.severity) - sevRank(b.severity) ||
                                                                 a.start - b.start);
    const sec = el('section', { class: 'view', id: 'view-alerts', 'data-incidents': incs.length,
                                'data-current': current.length },
      el('h2', { text: 'Alerts: timeline and current alerts' }),
      el('p', { class: 'note', text: 'One row per alert (kind and resource); each bar is an incident, from when ' +
        'it fired to when it resolved (to the right edge while still firing); ▲ marks a firing change ' +
        '(including a severity escalation), ● a resolution.' }));
    const after = [];
    if (incs.length) {
      // rows: one per fingerprint; firing ones and the most recently changed first when capped
      const byFp = new Map();
      for (const i of incs) {
        if (!byFp.has(i.fingerprint)) byFp.set(i.fingerprint, []);
        byFp.get(i.fingerprint).push(i);
      }
      let fps = [...byFp.keys()];
      let hidden = 0;
      if (fps.length > MAX_TIMELINE_ROWS) {
        const rank = (fp) => {
          const list = byFp.get(fp);
          const last = list[list.length - 1];
          return [last.current ? 0 : 1, -last.lastChange];
        };
        const keep = new Set([...fps].sort((a, b) => {
          const [ra, rb] = [rank(a), rank(b)];
          return ra[0] - rb[0] || ra[1] - rb[1];
        }).slice(0, MAX_TIMELINE_ROWS));
        hidden = fps.length - keep.size;
        fps = fps.filter((fp) => keep.has(fp));
      }
      const rowOf = new Map(fps.map((fp, r) => [fp, r]));
      const rows = fps.map((fp) => {
        const i = byFp.get(fp)[0];
        return `${kindLabel(i.kind)} · ${resourceLabel(i.resource)}`;
      });
      const drawn = incs.filter((i) => rowOf.has(i.fingerprint));
      const legend = el('div', { class: 'legend' },
        ...['Sev0', 'Sev1', 'Sev2', 'Sev3', 'Sev4'].map((s) => el('span', {},
          el('span', { class: 'sw', style: `background:${SEV_COLOR[s]}` }), `${s} (${SEV_TEXT[s]})`)),
        el('span', { text: '▲ fired  ● resolved  hatched end: still firing' }), el('span', {}, 'time axis: UTC'));
      const chart = el('div', { class: 'chart timeline-chart', id: 'alerts-timeline', 'data-series': rows.length });
      const readout = el('div', { class: 'readout', text: ' ' });
      sec.append(legend, chart, readout);
      if (hidden) {
        sec.append(el('p', { class: 'note', text: `${hidden} older alert(s) with no change in view are not drawn ` +
                                                  `(${MAX_TIMELINE_ROWS} rows at most).` }));
      }
      const describe = (row, t) => {
        const fp = fps[row];
        if (!fp) return ' ';
        const list = byFp.get(fp);
        const i = list.find((x) => x.start <= t && (x.end === null || t <= x.end)) || list[list.length - 1];
        return `${i.severity} ${i.status} · ${rows[row]} · ${fmtUTC(i.start)} → ` +
               `${i.end ? fmtUTC(i.end) : 'still firing'} · ${i.summary}`.slice(0, 400) + ` · cursor ${fmtUTC(t)}`;
      };
      after.push(() => rowsChart(chart, {
        rows, xMin: win.from, xMax: win.to, readout, describe, rowPx: 26, seriesLabel: 'incidents',
        draw: (u, g) => {
          const ctx = u.ctx;
          ctx.save();
          clipToPlot(u, ctx);
          drawn.forEach((i) => {
            const x0 = g.x(Math.max(i.start, win.from));
            const x1 = g.x(i.end === null ? win.to : Math.min(i.end, win.to));
            const yc = g.y(rowOf.get(i.fingerprint));
            const h = g.rowH * 0.46;
            ctx.fillStyle = SEV_COLOR[i.severity] || OI.grey;
            ctx.globalAlpha = i.end === null ? 1 : 0.4; // resolved incidents are quieter than live ones
            ctx.fillRect(x0, yc - h / 2, Math.max(2 * dpr(), x1 - x0), h);
            ctx.globalAlpha = 1;
            if (i.end === null) { // hatch the open end
              ctx.strokeStyle = 'rgba(0,0,0,0.55)';
              ctx.lineWidth = dpr();
              for (let x = Math.max(x0, x1 - 40 * dpr()); x < x1; x += 6 * dpr()) {
                ctx.beginPath(); ctx.moveTo(x, yc + h / 2); ctx.lineTo(x + 5 * dpr(), yc - h / 2); ctx.stroke();
              }
            }
            ctx.strokeStyle = '#000';
            ctx.lineWidth = dpr();
            ctx.strokeRect(x0, yc - h / 2, Math.max(2 * dpr(), x1 - x0), h);
            ctx.fillStyle = '#000';
            for (const c of i.changes) {
              const t = isoToS(c.ts);
              if (t < win.from || t > win.to) continue;
              const x = g.x(t);
              const s = 5 * dpr();
              ctx.beginPath();
              if (c.status === 'firing') {
                ctx.moveTo(x, yc - h / 2 - s - 1); ctx.lineTo(x - s, yc - h / 2 - 1); ctx.lineTo(x + s, yc - h / 2 - 1);
              } else {
                ctx.arc(x, yc - h / 2 - s / 2 - 1, s / 1.6, 0, 2 * Math.PI);
              }
              ctx.fill();
            }
          });
          ctx.restore();
        },
      }));
    } else {
      sec.append(el('p', { class: 'empty', text: 'No alert changed in this window.' }));
    }
    sec.append(el('h3', { text: `Current alerts (${current.length})` }));
    if (!current.length) {
      sec.append(el('p', { class: 'empty', id: 'no-current-alerts', text: 'Nothing is firing.' }));
    }
    sec.append(el('table', { class: 'grid', id: 'current-alerts' },
      el('thead', {}, el('tr', {}, ['severity', 'kind', 'resource', 'firing since (UTC)', 'last change (UTC)',
                                    'summary'].map((h) => el('th', { text: h })))),
      el('tbody', {}, current.map((i) => el('tr', { 'data-fingerprint': i.fingerprint, 'data-kind': i.kind },
        el('td', {}, sevBadge(i.severity)), el('td', { text: kindLabel(i.kind) }),
        el('td', { text: resourceLabel(i.resource) }),
        el('td', { text: fmtUTC(i.start).replace(' UTC', '') }),
        el('td', { text: fmtUTC(i.lastChange).replace(' UTC', '') }),
        el('td', {}, silencedBy(m, i) ? el('b', { class: 'silenced', text: `silenced (${silencedBy(m, i).id}) ` }) : null,
           `${i.summary} `, el('span', { class: 'asof', text: `(as of ${fmtUTC(i.lastChange)})` }),
           i.runbook ? el('div', { class: 'status-step' }, el('b', { text: 'First step: ' }), firstStep(i.runbook))
                     : null,
           i.runbook ? el('details', {}, el('summary', { text: 'whole runbook' }),
                          el('pre', { text: i.runbook })) : null))))));
    return { sec, after };
  }

  // ------------------------------------------------------------------------------------------
  // page
  // ------------------------------------------------------------------------------------------

  function destroyCharts() {
    for (const c of state.charts) c.u.destroy();
    state.charts = [];
  }

  function draw() {
    const m = state.model;
    const root = state.root;
    destroyCharts();
    const changes = allChanges();
    const incs = incidents(changes);
    const win = windowOf(changes);
    const parts = [renderPools(m, incs, win), renderDuplicates(m, incs, win), renderCongestion(m, incs, win),
                   renderAlerts(m, incs, win)];
    const nav = el('nav', { class: 'views' },
      el('a', { href: '#status-banner', text: 'Status' }), el('a', { href: '#view-pools', text: 'IP pools' }), el('a', { href: '#view-duplicates', text: 'Duplicate IPs' }),
      el('a', { href: '#view-congestion', text: 'East-west congestion' }),
      el('a', { href: '#view-alerts', text: 'Alerts' }));
    const main = el('main', {}, parts.map((p) => p.sec));
    const footer = el('footer', { text: 'hciwatch operator views · charts drawn with uPlot (MIT) bundled in the ' +
      'page · all times UTC · colours: Okabe–Ito and viridis (colour-blind safe)' });
    root.replaceChildren(renderStatus(m, incs), renderHeader(m, win), nav, main, footer);
    for (const p of parts) for (const f of p.after) f();
    state.counts = {
      pools: (m.pools || []).length,
      poolSeries: [...root.querySelectorAll('.pool-chart')].map((c) => Number(c.getAttribute('data-series'))),
      duplicates: incs.filter((i) => i.kind === 'duplicate_ip').length,
      congestionHosts: (m.congestion && m.congestion.hosts.length) || 0,
      congestionSignals: (m.congestion && m.congestion.signals.length) || 0,
      congestionIncidents: incs.filter((i) => i.kind === 'eastwest_congestion').length,
      alertIncidents: incs.length,
      currentAlerts: incs.filter((i) => i.current).length,
      statusFiring: Number(root.querySelector('#status-banner').getAttribute('data-firing')),
      charts: state.charts.length,
    };
    root.setAttribute('data-rendered', String(Number(root.getAttribute('data-rendered') || 0) + 1));
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of state.charts) c.u.setSize({ width: chartWidth(c.container), height: c.height });
    }, 150);
  });

  const api = {
    /* Draw a model into root (replaces what was there). */
    render(model, root, opts) {
      if (!model || model.schema !== 'hciwatch.report/1') throw new Error('not an hciwatch report model');
      state.model = model;
      state.root = root;
      state.opts = opts || {};
      draw();
    },
    /* Alert changes (Alert.to_json shape) that arrived after the model; redraws the views. */
    addAlerts(changes) {
      for (const c of changes) state.live.push(c);
      if (state.model) draw();
    },
    /* Keep live changes that a newer model does not contain yet. */
    replaceModel(model) {
      const have = new Set((model.alerts || []).map(changeKey));
      state.live = state.live.filter((c) => !have.has(changeKey(c)));
      state.model = model;
      draw();
    },
    counts() { return JSON.parse(JSON.stringify(state.counts)); },
    charts() { return state.charts.map((c) => ({ id: c.container.id, cls: c.container.className,
                                                  series: c.u.series.length - 1 })); },
    fmtUTC,
    timeTicks: (splits) => timeTicks(null, splits),
    firstStep,
  };
  window.hciwatchViews = api;

  document.addEventListener('DOMContentLoaded', () => {
    const block = document.getElementById('hciwatch-model');
    if (block) api.render(JSON.parse(block.textContent), document.getElementById('app'));
  });
}());
