// autogit dashboard: buttons and forms call the API; the page follows the event stream and
// swaps in a fresh <main> when something happens. No dependencies, no build step.
'use strict';
(function () {
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || '';
  const csrf = meta('csrf-token');
  const csrfHeader = meta('csrf-header') || 'x-csrf-token';
  const main = document.getElementById('main');
  const toast = document.getElementById('toast');
  const live = document.getElementById('live');
  if (!main || !csrf) return; // the sign-in page

  function say(text, bad) {
    toast.textContent = text;
    toast.className = bad ? 'show bad' : 'show';
    clearTimeout(say.t);
    say.t = setTimeout(() => { toast.className = ''; }, 6000);
  }

  // ---- live refresh ----------------------------------------------------------------------
  let pending = false;
  let refreshing = false;
  function editing() {
    const a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  async function refresh() {
    if (editing()) { pending = true; return; }
    if (refreshing) { pending = true; return; }
    refreshing = true;
    pending = false;
    try {
      const r = await fetch(location.pathname + location.search, {
        headers: { 'x-autogit-fragment': 'main' }, credentials: 'same-origin', cache: 'no-store',
      });
      if (r.status === 401) { location.assign('/login?next=' + encodeURIComponent(location.pathname)); return; }
      if (r.ok) {
        const focused = document.activeElement && document.activeElement.id;
        main.innerHTML = await r.text();
        document.body.dataset.refreshed = String(Date.now());
        for (const log of main.querySelectorAll('pre.log')) log.scrollTop = log.scrollHeight;
        if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
      }
    } catch (e) { /* the next event retries */ }
    refreshing = false;
    if (pending) schedule();
  }
  let timer = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 120); }
  main.addEventListener('focusout', () => { if (pending) setTimeout(() => { if (!editing()) schedule(); }, 0); });

  // The event stream through fetch (EventSource only delivers events by name; this page
  // wants all of them), resumed with Last-Event-ID after a drop.
  async function follow() {
    let last = null;
    let delay = 1000;
    for (;;) {
      try {
        const headers = { accept: 'text/event-stream' };
        if (last) headers['last-event-id'] = last;
        const r = await fetch('/api/v1/events', { headers, credentials: 'same-origin', cache: 'no-store' });
        if (r.status === 401) { live.textContent = 'Live updates: signed out'; return; }
        if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
        live.textContent = 'Live updates: on';
        document.body.dataset.live = 'on';
        delay = 1000;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let id = null; let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id:')) id = line.slice(3).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trim();
            }
            if (id) last = id;
            if (data) { document.body.dataset.lastEvent = data.slice(0, 200); schedule(); }
          }
        }
      } catch (e) { /* reconnect below */ }
      live.textContent = 'Live updates: reconnecting…';
      document.body.dataset.live = 'off';
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  // ---- actions: a button or a form names the API call -------------------------------------
  async function call(method, url, body) {
    const headers = { [csrfHeader]: csrf };
    if (body !== undefined && body !== '') headers['content-type'] = 'application/json';
    const r = await fetch(url, { method, headers, body: body || undefined, credentials: 'same-origin' });
    let json = null;
    try { json = await r.json(); } catch (e) { /* no body */ }
    return { r, json };
  }
  function problemText(r, json) {
    if (json && json.detail) return (json.title ? json.title + ': ' : '') + json.detail;
    return 'HTTP ' + r.status;
  }
  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-url]');
    if (!b) return;
    if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
    b.disabled = true;
    try {
      const { r, json } = await call(b.dataset.method, b.dataset.url, b.dataset.body);
      if (r.ok) say(b.textContent.trim() + ': done' + (r.status === 202 ? ' (started; progress on the event stream)' : ''));
      else say(problemText(r, json), true);
    } catch (e) { say('The request failed: ' + e.message, true); }
    b.disabled = false;
    schedule();
  });
  document.addEventListener('submit', async (ev) => {
    const f = ev.target.closest('form[data-url]');
    if (!f) return;
    ev.preventDefault();
    const body = {};
    for (const el of f.elements) {
      if (!el.name || el.value === '') continue;
      if ('split' in el.dataset) body[el.name] = el.value.trim().split(/\s+/);
      else if ('number' in el.dataset) body[el.name] = Number(el.value);
      else if ('bool' in el.dataset) body[el.name] = el.value === 'true';
      else body[el.name] = el.value;
    }
    try {
      const { r, json } = await call(f.dataset.method, f.dataset.url, JSON.stringify(body));
      if (!r.ok) say(problemText(r, json), true);
      else if (f.dataset.show && json) say('Verdict: ' + json[f.dataset.show] + ' (risk ' + Number(json.risk_score).toFixed(2) + ')');
      else say('Done' + (json && json.id ? ': ' + json.id : ''));
    } catch (e) { say('The request failed: ' + e.message, true); }
    document.activeElement && document.activeElement.blur();
    schedule();
  });

  // A section marked data-follow (a service's log) is read again every so many ms while
  // the page is visible.
  setInterval(() => {
    const f = main.querySelector('[data-follow]');
    if (f && document.visibilityState === 'visible') schedule();
  }, 2000);

  follow();
})();
