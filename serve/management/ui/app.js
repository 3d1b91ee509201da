// p2ptls management UI: reads and changes everything through /api/v1.
// Data is only ever put into the page with textContent (see el).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);

// api calls /api/v1 with the session cookie; changes carry the CSRF token.
// signal, when given, lets a newer request abort this one.
async function api(method, path, body, signal) {
  const opts = { method, credentials: "same-origin", headers: {}, signal };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch("/api/v1" + path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (res.status === 401) {
    location.href = "/ui/login?error=expired";
  }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.status + " " + res.statusText);
    err.hint = data && data.hint;
    err.status = res.status;
    throw err;
  }
  return data;
}

// el builds an element; strings among the children become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "onclick") e.addEventListener("click", v);
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "scope") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === "") continue;
    e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return d.toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC").replace(/:\d\dZ$/, " UTC");
}

function daysLeft(s) {
  if (!s) return "";
  const days = Math.floor((new Date(s) - Date.now()) / 86400000);
  return days < 0 ? "expired" : plural(days, "day") + " left";
}

// plural is "1 mapping", "3 mappings", "1,234 mappings"; many is the
// plural when it is not one+"s".
function plural(n, one, many) {
  return n.toLocaleString("en-US") + " " + (n === 1 ? one : many || one + "s");
}

// relTime is s relative to now in the largest whole unit: "in 29 days",
// "3 hours ago".
function relTime(s) {
  const ms = new Date(s) - Date.now();
  const abs = Math.abs(ms);
  for (const [unit, size] of [["day", 86400000], ["hour", 3600000], ["minute", 60000]]) {
    if (abs >= size) {
      const t = plural(Math.floor(abs / size), unit);
      return ms > 0 ? "in " + t : t + " ago";
    }
  }
  return ms > 0 ? "in under a minute" : "just now";
}

// when is a date that does not wrap: relative, the timestamp as tooltip;
// "—" without one.
function when(s) {
  if (!s) return el("span", { class: "muted" }, "—");
  return el("time", { class: "when", dateTime: s, title: fmtTime(s) }, relTime(s));
}

// oneLine summarises an error for a table cell: its first line, cut at a
// word near maxErrorLine characters. The whole text is in Details.
const maxErrorLine = 100;
function oneLine(s) {
  if (!s) return "";
  let line = s.split("\n").map((l) => l.trim()).find((l) => l !== "") || "";
  if (line.length > maxErrorLine) {
    const cut = line.lastIndexOf(" ", maxErrorLine);
    line = line.slice(0, cut > maxErrorLine / 2 ? cut : maxErrorLine) + "…";
  } else if (line !== s.trim()) {
    line += " …";
  }
  return line;
}

function errorText(err) { return err.message + (err.hint ? " — " + err.hint : ""); }

function showError(target, err) {
  target.textContent = errorText(err);
  target.hidden = false;
}

function pageError(err) { showError($("#page-error"), err); }

// Notices: one line after every action, at the bottom of the window so it
// is seen wherever the page is scrolled. A success is a status; a failure
// an alert, which stays until closed or the next action.
function notice(text) {
  $("#action-error").hidden = true;
  const n = $("#action-notice");
  n.textContent = text;
  n.hidden = false;
}

function actionError(what, err) {
  $("#action-notice").hidden = true;
  $("#action-error-text").textContent = what + ": " + errorText(err);
  $("#action-error").hidden = false;
}

// Dialogs ---------------------------------------------------------------

// openDialog shows d as a modal and gives the focus back to what opened
// it when it closes (or, when that was re-rendered meanwhile, to what
// fallback returns).
function openDialog(d, fallback) {
  const opener = document.activeElement;
  d.addEventListener("close", () => {
    const back = opener && opener.isConnected && opener !== document.body ? opener : fallback && fallback();
    if (back) back.focus();
  }, { once: true });
  d.showModal();
}

// focusables are the controls of a dialog that Tab reaches, in order.
function focusables(d) {
  return [...d.querySelectorAll("button, input, select, textarea, a[href], [tabindex]")]
    .filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0);
}

for (const d of document.querySelectorAll("dialog")) {
  // The modal keeps the focus: Tab from the last control goes to the
  // first, Shift+Tab from the first to the last. Escape closes it (the
  // dialog's own cancel).
  d.addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab") return;
    const f = focusables(d);
    if (f.length === 0) return;
    const first = f[0], last = f[f.length - 1];
    if (ev.shiftKey && (document.activeElement === first || !d.contains(document.activeElement))) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && (document.activeElement === last || !d.contains(document.activeElement))) {
      ev.preventDefault();
      first.focus();
    }
  });
}

for (const b of document.querySelectorAll("dialog [data-close]")) {
  b.addEventListener("click", () => b.closest("dialog").close());
}

// confirmAction asks in a modal; yesLabel names what the confirming
// button does.
function confirmAction(text, yesLabel = "Remove") {
  const d = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    const yes = $("#confirm-yes");
    yes.textContent = yesLabel;
    const done = (ok) => { yes.onclick = null; d.onclose = null; d.close(); resolve(ok); };
    yes.onclick = () => done(true);
    d.onclose = () => done(false);
    openDialog(d, () => $("#add-mapping"));
  });
}

// The TLS page ----------------------------------------------------------

let listeners = [];
let credentials = [];

// views are the listener sections by listener name; a reload keeps each
// one's filter.
let views = new Map();
let viewCount = 0; // numbers the sections' element ids

// A page of mappings: what GET /api/v1/mappings answers by default.
const pageLimit = 100;
// searchDelay (ms) is how long typing pauses before the search is sent.
const searchDelay = 150;
const statusNames = ["valid", "expiring", "expired", "pending", "failed", "missing"];
const sourceNames = ["acme", "self-signed", "manual", "file"];
const columns = ["Hosts", "Source", "Challenge", "Status", "Expires", "Renewal", "Last attempt", "Last error", "Actions"];

// known holds the hosts of the mappings seen, by id, for "served
// meanwhile by"; null for an id the API does not know.
const known = new Map();

// counts are GET /api/v1/mapping-counts as last read; null until then,
// or when it failed (the page works without).
let counts = null;
// statusOrder is how counts list statuses: what needs a look first.
const statusOrder = ["failed", "expired", "missing", "expiring", "pending", "valid"];

// firstRows: the first rows of every listener are on the page, marked
// for measurement (performance.getEntriesByName).
let firstRows = false;

async function load() {
  $("#page-error").hidden = true;
  // The management panel fails on its own: its error does not hide the
  // rest. Both render together, once everything is read.
  const mgmt = api("GET", "/management").then((doc) => ({ doc }), (err) => ({ err }));
  try {
    const [status, ls, creds] = await Promise.all([api("GET", "/status"), api("GET", "/listeners"), api("GET", "/dns-credentials")]);
    listeners = ls;
    credentials = creds;
    renderTLS(status, ls);
    renderDNS(creds);
    const counted = loadCounts();
    await Promise.all([...views.values()].map((v) => v.refresh()));
    if (!firstRows) {
      firstRows = true;
      performance.mark("p2ptls:rows");
    }
    await counted;
  } catch (err) {
    pageError(err);
  }
  const m = await mgmt;
  $("#mgmt-error").hidden = true;
  if (m.err) {
    mgmtError(m.err);
    $("#mgmt-info").replaceChildren();
    $("#rotation").hidden = true;
  } else {
    renderMgmt(m.doc);
  }
}

function renderTLS(status, ls) {
  $("#serve-state").textContent = status.serve_running
    ? "serve is running (pid " + status.pid + "), " + plural(status.reloads, "reload") +
      (status.last_reload_error ? "; last reload failed: " + status.last_reload_error : "") +
      backoffSummary(status.acme_backoff)
    : "serve is not running";
  const box = $("#listeners");
  box.replaceChildren();
  if (ls.length === 0) {
    box.append(el("p", { class: "muted" }, "No HTTPS listener yet: add one with 'p2ptls listener add'."));
  }
  const running = {};
  for (const l of status.listeners || []) running[l.name] = l;
  const old = views;
  views = new Map();
  for (const l of ls) {
    const v = new ListenerView(l, running[l.name], old.has(l.name) ? old.get(l.name).filter : null);
    views.set(l.name, v);
    box.append(v.section);
  }
}

// loadCounts reads the counts and shows them: at the top the problems of
// every listener ("3 failed · 12 expiring"), in each section its own.
async function loadCounts() {
  try {
    counts = await api("GET", "/mapping-counts");
  } catch (err) {
    counts = null;
  }
  const top = $("#tls-counts");
  top.textContent = "";
  if (counts) {
    const problems = statusOrder.filter((s) => s !== "valid" && counts.status[s] > 0)
      .map((s) => counts.status[s].toLocaleString("en-US") + " " + s);
    top.textContent = plural(counts.total, "mapping") + " on " + plural(counts.listeners.length, "listener") + ": " +
      (problems.length ? problems.join(" · ") : counts.total ? "all valid" : "none yet");
  }
  for (const v of views.values()) {
    v.showCounts(counts && counts.listeners.find((l) => l.name === v.name));
    if (v.loaded) v.showInfo();
  }
}

// ListenerView is one listener's section: its filters and the pages of
// its mappings the API answered so far.
class ListenerView {
  constructor(l, st, filter) {
    this.name = l.name;
    this.filter = filter || { q: "", status: "", source: "" };
    this.seq = 0; // the newest listing asked for: an older answer is dropped
    this.ctrl = null; // aborts the listing in flight when a newer one starts
    this.next = "";
    this.shown = 0;
    this.loaded = false; // a first page was shown
    this.timer = 0;
    const p = "l" + ++viewCount;
    const title = el("h3", { id: p + "-title" }, l.name + " ",
      el("span", { class: "muted" }, l.addr + (l.http_addr ? " · http " + l.http_addr : "") + " · fallback " + l.fallback));
    this.section = el("section", { class: "listener", "data-listener": l.name, "aria-labelledby": p + "-title" }, title);
    if (st && st.error) this.section.append(el("p", { class: "error" }, "Not listening: " + st.error));
    if (st && st.fallback_total > 0) this.section.append(fallbackBanner(st, l));

    this.q = el("input", { type: "search", name: "q", value: this.filter.q, placeholder: "host or id", autocomplete: "off", "aria-controls": p + "-rows" });
    this.status = el("select", { name: "status", "aria-controls": p + "-rows" },
      el("option", { value: "" }, "any"), statusNames.map((s) => el("option", { value: s }, s)));
    this.status.value = this.filter.status;
    this.source = el("select", { name: "source", "aria-controls": p + "-rows" },
      el("option", { value: "" }, "any"), sourceNames.map((s) => el("option", { value: s }, s)));
    this.source.value = this.filter.source;
    const filters = el("form", { class: "filters", role: "search", "aria-label": "Find mappings of " + l.name },
      el("label", {}, "Search ", this.q), el("label", {}, "Status ", this.status), el("label", {}, "Source ", this.source));
    this.q.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.setFilter({ q: this.q.value.trim() }), searchDelay);
    });
    filters.addEventListener("submit", (ev) => {
      ev.preventDefault();
      clearTimeout(this.timer);
      this.setFilter({ q: this.q.value.trim() });
    });
    this.status.addEventListener("change", () => this.setFilter({ status: this.status.value }));
    this.source.addEventListener("change", () => this.setFilter({ source: this.source.value }));

    // The roles are explicit: on a narrow window the table is laid out as
    // cards (display: block), which would lose them.
    this.body = el("tbody", { id: p + "-rows", role: "rowgroup" });
    this.table = el("table", { class: "mappings", role: "table" },
      el("caption", { class: "visually-hidden" }, "Mappings of listener " + l.name),
      el("thead", { role: "rowgroup" }, el("tr", { role: "row" }, columns.map((h) => el("th", { scope: "col", role: "columnheader" }, h)))), this.body);
    this.info = el("p", { class: "muted page-info", "aria-live": "polite" }, "Loading…");
    this.moreButton = el("button", { type: "button", class: "secondary load-more", hidden: true, onclick: () => this.more() }, "Load more");
    this.error = el("p", { class: "error", role: "alert", hidden: true });
    this.counts = el("p", { class: "counts" });
    this.section.append(this.counts, filters, this.error, el("div", { class: "table-wrap" }, this.table),
      el("div", { class: "paging" }, this.info, this.moreButton));
  }

  // path is the API's listing of this view's filter, from cursor on.
  path(cursor) {
    const p = new URLSearchParams({ listener: this.name, limit: String(pageLimit) });
    if (this.filter.q) p.set("q", this.filter.q);
    if (this.filter.status) p.set("status", this.filter.status);
    if (this.filter.source) p.set("source", this.filter.source);
    if (cursor) p.set("cursor", cursor);
    return "/mappings?" + p;
  }

  setFilter(change) {
    const f = Object.assign({}, this.filter, change);
    if (f.q === this.filter.q && f.status === this.filter.status && f.source === this.filter.source) return;
    this.filter = f;
    this.refresh();
  }

  filtered() { return this.filter.q !== "" || this.filter.status !== "" || this.filter.source !== ""; }

  // refresh shows the first page of the filter.
  async refresh() {
    const seq = ++this.seq;
    if (this.ctrl) this.ctrl.abort();
    this.ctrl = new AbortController();
    this.section.setAttribute("aria-busy", "true");
    try {
      const page = await api("GET", this.path(""), undefined, this.ctrl.signal);
      await learnServedBy(page.items);
      if (seq !== this.seq) return;
      this.error.hidden = true;
      this.loaded = true;
      this.body.replaceChildren(...page.items.map(mappingRow));
      this.shown = page.items.length;
      this.next = page.next_cursor;
      this.showInfo();
    } catch (err) {
      if (seq === this.seq && err.name !== "AbortError") showError(this.error, err);
    } finally {
      if (seq === this.seq) this.section.removeAttribute("aria-busy");
    }
  }

  // more appends the next page.
  async more() {
    const seq = this.seq;
    this.moreButton.disabled = true;
    try {
      const page = await api("GET", this.path(this.next), undefined, this.ctrl.signal);
      await learnServedBy(page.items);
      if (seq !== this.seq) return;
      this.body.append(...page.items.map(mappingRow));
      this.shown += page.items.length;
      this.next = page.next_cursor;
      this.showInfo();
    } catch (err) {
      if (seq === this.seq && err.name !== "AbortError") showError(this.error, err);
    } finally {
      this.moreButton.disabled = false;
    }
  }

  showInfo() {
    this.table.hidden = this.shown === 0;
    this.moreButton.hidden = this.next === "";
    if (this.shown === 0) {
      this.info.textContent = this.filtered() ? "No mapping matches." : "No mappings.";
      return;
    }
    // Out of how many, when the counts say (no search, no source filter).
    const total = this.total();
    const of = this.next && total !== undefined ? this.shown.toLocaleString("en-US") + " of " + plural(total, "mapping") : plural(this.shown, "mapping");
    this.info.textContent = "Showing " + of + (this.next ? "; more to load." : this.filtered() ? (this.shown === 1 ? " that matches." : " that match.") : ".");
  }

  // total is how many mappings the filter selects, from the counts;
  // undefined when they do not say.
  total() {
    const c = counts && counts.listeners.find((l) => l.name === this.name);
    if (!c || this.filter.q !== "" || this.filter.source !== "") return undefined;
    return this.filter.status ? c.status[this.filter.status] : c.total;
  }

  // showCounts lists the listener's mappings by status; each count shows
  // those mappings.
  showCounts(c) {
    this.counts.replaceChildren();
    if (!c || c.total === 0) return;
    this.counts.append(plural(c.total, "mapping") + ": ");
    statusOrder.filter((s) => c.status[s] > 0).forEach((s, i) => {
      if (i > 0) this.counts.append(" · ");
      this.counts.append(el("button", { type: "button", class: "link badge-text-" + s, "data-status": s,
        "aria-label": "Show the " + plural(c.status[s], s + " mapping", s + " mappings") + " of " + this.name,
        onclick: () => { this.status.value = s; this.setFilter({ status: s }); } }, c.status[s].toLocaleString("en-US") + " " + s));
    });
  }

  row(id) { return this.body.querySelector('tr[data-id="' + CSS.escape(id) + '"]'); }
}

// learnServedBy records the hosts of items and looks up the mappings
// their served_by names that no page showed yet (wildcards are few).
async function learnServedBy(items) {
  for (const m of items) known.set(m.id, m.hosts);
  const ask = new Set();
  for (const m of items) for (const id of servedByIDs(m)) if (!known.has(id)) ask.add(id);
  await Promise.all([...ask].map(async (id) => {
    try {
      known.set(id, (await api("GET", "/mappings/" + encodeURIComponent(id))).hosts);
    } catch (err) {
      if (err.status === 404) known.set(id, null);
    }
  }));
}

// servedByIDs are the wildcard mappings that serve m's hosts while m has
// no usable certificate (served_by, ids joined by ","; absent from older
// servers).
function servedByIDs(m) { return m.served_by ? m.served_by.split(",") : []; }

function servedBy(m) {
  const ids = servedByIDs(m);
  if (ids.length === 0) return null;
  const text = ids.map((id) => {
    const hosts = known.get(id);
    return hosts ? hosts.join(", ") + " (mapping " + id + ")" : "mapping " + id;
  }).join("; ");
  return el("div", { class: "muted served-by" }, "served meanwhile by " + text);
}

// backoffSummary is serve's count of the ACME mappings backing off, as
// "p2ptls status" prints it; "" until serve's first renewal pass counted.
function backoffSummary(b) {
  if (!b) return "";
  if (b.rate_limited + b.account_paused + b.failed === 0) return "; ACME back-off: none";
  return "; ACME back-off: " + b.rate_limited + " rate limited, " + b.account_paused + " account paused, " +
    b.failed + " failed, earliest retry " + fmtTime(b.earliest_retry_at) + " (counted " + fmtTime(b.counted_at) + ")";
}

// fallbackBanner says what the listener did with handshakes for names no
// mapping covers: refused them (fallback reject) or answered them with its
// fallback certificate.
function fallbackBanner(st, l) {
  const names = Object.entries(st.fallback_hits || {}).sort((a, b) => b[1] - a[1])
    .map(([sni, n]) => el("li", {}, (sni === "" ? "(no SNI)" : sni) + ": " + n));
  const what = l.fallback === "reject"
    ? "This listener refused " + plural(st.fallback_total, "handshake") + " since serve started."
    : "This listener served its fallback certificate " + plural(st.fallback_total, "time") + " since serve started.";
  return el("div", { class: "banner", role: "alert" },
    el("strong", {}, what), " Clients asked for names no mapping covers:",
    el("ul", { class: "fallback-names" }, names));
}

// canRenew: p2ptls renews ACME and self-signed certificates; manual and
// file ones are the operator's to replace.
function canRenew(m) { return m.source === "acme" || m.source === "self-signed"; }

function renewal(m) {
  if (canRenew(m)) return when(m.next_renewal_at);
  if (!m.not_after) return el("span", { class: "muted" }, "—");
  return el("time", { class: "when", dateTime: m.not_after, title: fmtTime(m.not_after) + " (" + relTime(m.not_after) + ")" },
    "replace before " + m.not_after.slice(0, 10));
}

function mappingRow(m) {
  const of = " " + m.id;
  const actions = el("td", { class: "actions" },
    el("button", { type: "button", class: "secondary", "aria-label": "Details of" + of, onclick: () => showCert(m.id, m) }, "Details"),
    el("button", { type: "button", class: "secondary", "data-action": "edit", "aria-label": "Edit" + of, onclick: () => openMappingForm(m) }, "Edit"));
  if (canRenew(m)) {
    const label = m.source === "acme" ? "Issue/renew now" : "Regenerate";
    actions.append(el("button", { type: "button", "aria-label": label + of, onclick: (ev) => issue(m, ev.currentTarget) }, label));
  }
  actions.append(el("button", { type: "button", class: "danger", "aria-label": "Remove" + of, onclick: () => removeMapping(m) }, "Remove"));
  const cells = [
    el("td", { class: "hosts" }, m.hosts.join(", ")),
    el("td", { class: "nowrap" }, m.source),
    el("td", {}, m.challenge ? m.challenge + (m.dns_credential ? " (" + m.dns_credential + ")" : "") : "—"),
    el("td", {}, el("span", { class: "badge badge-" + m.status }, m.status), servedBy(m)),
    el("td", {}, when(m.not_after)),
    el("td", {}, renewal(m)),
    el("td", {}, when(m.last_attempt_at)),
    el("td", { class: "error", title: m.last_error_detail || m.last_error || "" }, oneLine(m.last_error), backoffNote(m)),
    actions];
  // data-label names the column in the narrow layout.
  cells.forEach((c, i) => { c.setAttribute("role", "cell"); c.dataset.label = columns[i]; });
  return el("tr", { "data-id": m.id, "data-status": m.status, role: "row" }, cells);
}

// backoffReasons say, for a table, why a mapping waits (backoff_reason).
const backoffReasons = {
  rate_limited: "rate limited until",
  account_paused: "account paused; retries once a day, next",
  failed: "retries from",
};

// backoffNote is the lines under the error of an ACME mapping: why it
// waits and until when ("rate limited until …"; absent from older
// servers: nothing), and the failed attempts in a row.
function backoffNote(m) {
  const out = [];
  if (m.backoff_reason && m.retry_at) {
    const what = backoffReasons[m.backoff_reason] || "backing off until";
    out.push(el("div", { class: "muted backoff", "data-reason": m.backoff_reason },
      what + " " + fmtTime(m.retry_at) + " (" + relTime(m.retry_at) + ")"));
  }
  if (m.source === "acme" && m.attempts > 0 && m.last_error) {
    out.push(el("div", { class: "muted attempts" }, plural(m.attempts, "failed attempt") + " in a row"));
  }
  return out;
}

function warningsOf(res) {
  return res && res.warnings && res.warnings.length ? " Warning: " + res.warnings.join("; ") : "";
}

// showChanged puts the mapping an action answered into its listener's
// table (in place, or first when the page does not show it), marks it
// and scrolls to it, and says what happened. The focus stays on the same
// button of the new row.
function showChanged(m, text) {
  known.set(m.id, m.hosts);
  loadCounts();
  const v = views.get(m.listener);
  if (text) notice(text);
  if (!v) return;
  const tr = mappingRow(m);
  const old = v.row(m.id);
  let focusAt = -1;
  if (old) {
    focusAt = [...old.querySelectorAll("button")].indexOf(document.activeElement);
    old.replaceWith(tr);
  } else {
    v.body.prepend(tr);
    v.shown++;
    v.showInfo();
  }
  for (const r of document.querySelectorAll("tr.changed")) r.classList.remove("changed");
  tr.classList.add("changed");
  tr.scrollIntoView({ block: "center" });
  if (focusAt >= 0) tr.querySelectorAll("button")[focusAt].focus();
}

// rowButton is the button of a mapping's row named by data-action.
function rowButton(id, action) {
  return document.querySelector('tr[data-id="' + CSS.escape(id) + '"] button[data-action="' + action + '"]');
}

async function issue(m, button) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Working…";
  try {
    const res = await api("POST", "/mappings/" + encodeURIComponent(m.id) + "/issue");
    showChanged(res, (m.source === "acme" ? "Issued a certificate for " : "Regenerated the certificate of ") + m.id + "." + warningsOf(res));
  } catch (err) {
    actionError(label + " " + m.id, err);
    // A failed attempt is recorded in the mapping: show it.
    try {
      showChanged(await api("GET", "/mappings/" + encodeURIComponent(m.id)));
    } catch (e) { /* the error shown says enough */ }
  } finally {
    button.textContent = label;
    button.disabled = false;
  }
}

async function removeMapping(m) {
  if (!(await confirmAction("Remove mapping " + m.id + " (" + m.hosts.join(", ") + ")? Its certificate stops being served."))) return;
  try {
    await api("DELETE", "/mappings/" + encodeURIComponent(m.id));
  } catch (err) {
    actionError("Remove " + m.id, err);
    return;
  }
  known.delete(m.id);
  loadCounts();
  notice("Removed mapping " + m.id + " (" + m.hosts.join(", ") + ").");
  const v = views.get(m.listener);
  const tr = v && v.row(m.id);
  if (!tr) return;
  // The focus goes to the row that takes its place, or to the search.
  const next = tr.nextElementSibling || tr.previousElementSibling;
  tr.remove();
  v.shown--;
  v.showInfo();
  (next ? next.querySelector("button") : v.q).focus();
}

async function showCert(id, m) {
  const d = $("#cert-dialog");
  const dl = $("#cert-details");
  $("#cert-id").textContent = id;
  dl.replaceChildren();
  $("#cert-chain").replaceChildren();
  $("#cert-pem").hidden = true;
  $("#cert-pem-text").hidden = true;
  $("#cert-pem-status").textContent = "";
  const field = (k, v, cls) => dl.append(el("dt", {}, k), el("dd", { "data-field": k, class: cls || "" }, v === "" || v === null || v === undefined ? "—" : v));
  // The mapping first, with the last attempt's error in full and the
  // back-off, before the certificate (which a failed mapping may not have).
  if (m) {
    field("Hosts", m.hosts.join(", "));
    field("Source", m.source);
    field("Upstream", m.upstream || "the listener's");
    if (m.source === "acme") {
      field("Challenge", m.challenge + (m.dns_credential ? " (" + m.dns_credential + ")" : ""));
      field("Profile", m.profile || "the CA's default");
      if (m.key_type) field("Requested key type", m.key_type);
      field("Attempts", m.attempts ? plural(m.attempts, "failed attempt") + " in a row" : "none failed");
      if (m.retry_at) field("Next attempt", fmtTime(m.retry_at) + " (" + relTime(m.retry_at) + ")");
    }
  }
  if (m && m.last_error) {
    field("Last error", m.last_error, "error");
    if (m.last_error_detail && m.last_error_detail !== m.last_error) {
      field("Error detail", el("pre", { class: "error-detail" }, m.last_error_detail));
    }
  }
  if (m && m.backoff_reason && m.retry_at) {
    field("Backing off", m.backoff_reason.replace("_", " ") + " until " + fmtTime(m.retry_at));
  }
  if (m && m.ari_window_start && m.ari_window_end) {
    field("Renewal window", fmtTime(m.ari_window_start) + " to " + fmtTime(m.ari_window_end));
  }
  // The CA's explanation page is a link only when it is http(s): the URL
  // comes from the ACME server, not from the operator.
  if (m && /^https?:\/\//i.test(m.ari_explanation_url || "")) {
    field("CA's explanation", el("a", { href: m.ari_explanation_url, rel: "noopener noreferrer", target: "_blank" }, m.ari_explanation_url));
  }
  try {
    const c = await api("GET", "/certificates/" + encodeURIComponent(id));
    const rows = [
      ["Subject", c.subject], ["SANs", (c.dns_names || []).concat(c.ip_addresses || []).join(", ")],
      ["Issuer", c.issuer], ["Serial", c.serial], ["Key type", c.key_type],
      ["SHA-256 fingerprint", c.fingerprint_sha256], ["Valid from", fmtTime(c.not_before)],
      ["Valid until", fmtTime(c.not_after) + " (" + daysLeft(c.not_after) + ")"], ["Status", c.status],
    ];
    for (const [k, v] of rows) field(k, v, k === "SHA-256 fingerprint" || k === "Serial" ? "code" : "");
    for (const cc of c.chain || []) {
      $("#cert-chain").append(el("li", {}, cc.subject, el("br"),
        el("span", { class: "muted" }, "issued by " + cc.issuer + " · until " + fmtTime(cc.not_after)), el("br"),
        el("code", {}, cc.fingerprint_sha256)));
    }
    const a = $("#cert-pem-download");
    a.href = pemPath(id);
    a.download = id + ".pem";
    $("#cert-pem").dataset.id = id;
    $("#cert-pem").hidden = false;
  } catch (err) {
    field("Error", errorText(err), "error");
  }
  const v = m && views.get(m.listener);
  openDialog(d, () => v && v.q);
}

function pemPath(id) { return "/api/v1/certificates/" + encodeURIComponent(id) + "/pem"; }

// copyPEM copies the chain of the certificate the details show: by the
// clipboard API, else (no permission, no secure context) by selecting it
// in a text box and the copy command, else the box stays for the user to
// copy from.
async function copyPEM() {
  const id = $("#cert-pem").dataset.id;
  const out = $("#cert-pem-status");
  const box = $("#cert-pem-text");
  out.textContent = "";
  box.hidden = true;
  let pem;
  try {
    const res = await fetch(pemPath(id), { credentials: "same-origin" });
    if (!res.ok) {
      let data = {};
      try { data = await res.json(); } catch (e) { /* not JSON */ }
      throw Object.assign(new Error(data.error || res.status + " " + res.statusText), { hint: data.hint });
    }
    pem = await res.text();
  } catch (err) {
    out.textContent = "The chain was not read: " + errorText(err);
    return;
  }
  const done = "Copied the chain of " + id + " (" + plural((pem.match(/-----BEGIN CERTIFICATE-----/g) || []).length, "certificate") + ").";
  try {
    await navigator.clipboard.writeText(pem);
    out.textContent = done;
    return;
  } catch (err) {
    // No clipboard API here: the fallback below.
  }
  box.value = pem;
  box.hidden = false;
  box.select();
  let copied = false;
  try { copied = document.execCommand("copy"); } catch (err) { /* the box stays */ }
  if (copied) {
    box.hidden = true;
    $("#cert-pem-copy").focus();
  }
  out.textContent = copied ? done : "Copy the chain from the box below (it is selected).";
}

// The add/edit-mapping modal --------------------------------------------

const form = $("#mapping-form");

// editing is the mapping the modal changes, with the form's values as
// opened (initial); null while it adds one.
let editing = null;

function hostsOf() {
  return form.hosts.value.split(/[\s,]+/).filter((h) => h !== "");
}

// syncForm shows the fields of the chosen source (when editing, only the
// ones that can change in place); a wildcard forces DNS-01.
function syncForm() {
  const source = form.source.value;
  for (const div of form.querySelectorAll("[data-source]")) {
    div.hidden = div.dataset.source !== source || (editing !== null && source !== "acme");
  }
  const wildcard = hostsOf().some((h) => h.startsWith("*."));
  for (const o of form.challenge.options) o.disabled = wildcard && o.value !== "dns-01";
  if (wildcard) form.challenge.value = "dns-01";
  $("#wildcard-note").hidden = !wildcard;
  $("#dns-cred-label").hidden = form.challenge.value !== "dns-01";
}

// editable are the form's values PATCH can change, as comparable strings.
function editable() {
  const dns = form.challenge.value === "dns-01";
  return {
    hosts: hostsOf().join(","), upstream: form.upstream.value.trim(), challenge: form.challenge.value,
    dns_credential: dns ? form.dns_credential.value : "", profile: form.profile.value.trim(), key_type: form.key_type.value,
  };
}

function openMappingForm(m) {
  editing = null;
  form.reset();
  $("#mapping-error").hidden = true;
  form.listener.replaceChildren(...listeners.map((l) => el("option", { value: l.name }, l.name)));
  form.dns_credential.replaceChildren(...credentials.map((c) =>
    el("option", { value: c.name, disabled: !c.enabled }, c.name + " (" + c.provider + (c.enabled ? "" : ", disabled") + ")")));
  $("#mapping-title").textContent = m ? "Edit mapping " + m.id : "Add mapping";
  $("#mapping-submit").textContent = m ? "Save" : "Add";
  if (m) {
    form.listener.value = m.listener;
    form.id.value = m.id;
    form.hosts.value = m.hosts.join("\n");
    form.upstream.value = m.upstream || "";
    form.source.value = m.source;
    if (m.source === "acme") {
      form.challenge.value = m.challenge;
      form.dns_credential.value = m.dns_credential || "";
      form.profile.value = m.profile || "";
      if (m.key_type) form.key_type.value = m.key_type;
    }
  }
  // What cannot change in place is shown, not editable.
  form.listener.disabled = form.id.disabled = !!m;
  for (const r of form.querySelectorAll('input[name="source"]')) r.disabled = !!m;
  editing = m ? { m, initial: null } : null;
  syncForm();
  if (editing) editing.initial = editable();
  loadProfiles();
  openDialog($("#mapping-dialog"), () => (m ? rowButton(m.id, "edit") : null) || $("#add-mapping"));
}

// loadProfiles offers the profiles the ACME server advertises as the
// profile field's suggestions; the field stays free text, and the server
// checks what is typed (422 for a profile it does not offer).
async function loadProfiles() {
  const list = $("#profile-list");
  const note = $("#profile-note");
  list.replaceChildren();
  note.hidden = true;
  try {
    const p = await api("GET", "/acme/profiles");
    if (p.profiles) {
      const names = Object.keys(p.profiles).sort();
      list.replaceChildren(...names.map((n) => el("option", { value: n }, p.profiles[n])));
      note.textContent = names.length ? "The CA offers: " + names.join(", ") + "." : "The CA offers no profiles.";
    } else {
      note.textContent = "The CA's profiles are unknown (" + p.error + "): a profile is stored unchecked.";
    }
    note.hidden = false;
  } catch (err) {
    // The form works without suggestions.
  }
}

function readFile(input) {
  const f = input.files[0];
  return f ? f.text() : Promise.resolve("");
}

// patchBody is what changed since the modal opened, as PATCH takes it.
function patchBody() {
  const now = editable();
  const was = editing.initial;
  const body = {};
  if (now.hosts !== was.hosts) body.hosts = hostsOf();
  if (now.upstream !== was.upstream) body.upstream = now.upstream;
  if (editing.m.source === "acme") {
    for (const k of ["challenge", "dns_credential", "profile", "key_type"]) if (now[k] !== was[k]) body[k] = now[k];
  }
  return body;
}

async function addBody() {
  const body = { listener: form.listener.value, hosts: hostsOf(), source: form.source.value };
  if (form.id.value) body.id = form.id.value.trim();
  if (form.upstream.value) body.upstream = form.upstream.value.trim();
  switch (body.source) {
    case "self-signed":
      if (form.days.value) body.days = Number(form.days.value);
      break;
    case "manual":
      body.cert_pem = await readFile(form.cert_upload);
      body.key_pem = await readFile(form.key_upload);
      break;
    case "file":
      body.cert_file = form.cert_file.value.trim();
      body.key_file = form.key_file.value.trim();
      break;
    case "acme":
      body.challenge = form.challenge.value;
      body.key_type = form.key_type.value;
      if (body.challenge === "dns-01") body.dns_credential = form.dns_credential.value;
      if (form.profile.value.trim()) body.profile = form.profile.value.trim();
      break;
  }
  return body;
}

async function submitMapping(ev) {
  ev.preventDefault();
  const errBox = $("#mapping-error");
  errBox.hidden = true;
  const submit = $("#mapping-submit");
  const dialog = $("#mapping-dialog");
  submit.disabled = true;
  try {
    if (editing) {
      const id = editing.m.id;
      const body = patchBody();
      if (Object.keys(body).length === 0) {
        dialog.close();
        notice("Nothing to save: mapping " + id + " is unchanged.");
        return;
      }
      const saved = await api("PATCH", "/mappings/" + encodeURIComponent(id), body);
      dialog.close();
      showChanged(saved, "Saved mapping " + id + " (" + Object.keys(body).join(", ") + ")." + warningsOf(saved));
    } else {
      const added = await api("POST", "/mappings", await addBody());
      dialog.close();
      showChanged(added, "Added mapping " + added.id + " (" + added.hosts.join(", ") + ")." + warningsOf(added));
    }
  } catch (err) {
    // The modal stays open with the API's answer, the form as typed.
    showError(errBox, err);
  } finally {
    submit.disabled = false;
  }
}

// DNS credentials -------------------------------------------------------

function renderDNS(creds) {
  const body = $("#dns-rows");
  body.replaceChildren();
  if (creds.length === 0) body.append(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "No DNS credentials.")));
  for (const c of creds) {
    const path = "/dns-credentials/" + encodeURIComponent(c.name);
    const act = (label, method, suffix, cls) => el("button", { type: "button", class: cls || "secondary", onclick: () => dnsAction(c.name, label, method, path + suffix) }, label);
    body.append(el("tr", { "data-name": c.name },
      el("td", {}, c.name),
      el("td", {}, c.provider),
      el("td", {}, el("span", { class: c.enabled ? "badge badge-valid" : "badge badge-expired" }, c.enabled ? "enabled" : "disabled")),
      el("td", {}, c.problem ? "" : "…" + (c.token_hint || ""), c.problem ? el("div", { class: "error" }, c.problem) : null),
      el("td", {}, c.api_base_url || "—"),
      el("td", {}, (c.used_by || []).join(", ") || "—"),
      el("td", { class: "actions" },
        c.enabled ? act("Disable", "POST", "/disable") : act("Enable", "POST", "/enable"),
        act("Test", "POST", "/test"),
        act("Remove", "DELETE", "", "danger"))));
  }
}

async function dnsAction(name, label, method, path) {
  const out = $("#dns-result");
  if (method === "DELETE" && !(await confirmAction("Remove DNS credential " + name + "?"))) return;
  out.textContent = label + " " + name + "…";
  out.className = "muted";
  try {
    const res = await api(method, path);
    out.textContent = label + " " + name + ": " + testSummary(res);
    if (res && res.ok === false) out.className = "error";
  } catch (err) {
    out.className = "error";
    out.textContent = label + " " + name + ": " + err.message + (err.hint ? " — " + err.hint : "");
  }
  await load();
}

// testSummary describes the answer of a DNS credential action.
function testSummary(res) {
  if (!res || res.ok === undefined) return "done";
  const checks = (res.checks || []).map((c) => c.id + " " + c.status + (c.message ? " (" + c.message + ")" : "") + (c.hint ? " — " + c.hint : ""));
  return (res.ok ? "passed" : "failed") + "; zones: " + (res.zones.join(", ") || "none") +
    (checks.length ? "; " + checks.join("; ") : "");
}

async function submitDNS(ev) {
  ev.preventDefault();
  const f = ev.target;
  const errBox = f.querySelector(".form-error");
  errBox.hidden = true;
  const body = { name: f.name.value.trim(), provider: f.provider.value, api_token: f.api_token.value };
  if (f.api_base_url.value.trim()) body.api_base_url = f.api_base_url.value.trim();
  try {
    await api("POST", "/dns-credentials", body);
    f.reset();
    await load();
  } catch (err) {
    showError(errBox, err);
  }
}

// Management TLS ----------------------------------------------------------

function mgmtError(err) { showError($("#mgmt-error"), err); }

function mgmtNotice(text) {
  const n = $("#mgmt-notice");
  n.textContent = text;
  n.hidden = false;
}

// kv appends a term and its value, the value's element marked by id.
function kv(dl, term, value, id, cls) {
  const dd = el("dd", cls ? { class: cls } : {}, value);
  if (id) dd.id = id;
  dl.append(el("dt", {}, term), dd);
}

function names(c) {
  return (c.dns_names || []).concat(c.ip_addresses || []).map((n) => el("code", {}, n)).flatMap((c) => [c, " "]);
}

// renderMgmt shows GET /api/v1/management (or a rotation step's answer).
function renderMgmt(doc) {
  const dl = el("dl", { class: "kv" });
  kv(dl, "Mode", doc.mode, "mgmt-mode");
  if (doc.ca) {
    kv(dl, "CA", doc.ca.subject);
    kv(dl, "CA SHA-256", el("code", { id: "mgmt-ca-fp" }, doc.ca.fingerprint_sha256));
    kv(dl, "CA expires", fmtTime(doc.ca.not_after) + " (" + daysLeft(doc.ca.not_after) + ")");
  }
  if (doc.server) {
    kv(dl, "Server certificate names", names(doc.server));
    kv(dl, "Server certificate issued by", doc.server.issuer);
    kv(dl, "Server certificate expires", fmtTime(doc.server.not_after));
  }
  if (doc.missing_names && doc.missing_names.length) kv(dl, "Missing names", doc.missing_names.join(" "), "mgmt-missing", "error");
  $("#mgmt-info").replaceChildren(dl);
  const rot = doc.rotation;
  $("#download-ca").textContent = rot && rot.next ? "Download CA bundle (current and next CA)" : "Download CA";
  $("#agent-env-error").hidden = !doc.agent_env_error;
  $("#agent-env-error").textContent = doc.agent_env_error || "";
  $("#agent-env-warn").hidden = !!doc.agent_env_error || doc.public_url_set;
  $("#agent-env").hidden = !!doc.agent_env_error;
  $("#agent-env").textContent = (doc.agent_env || []).map((l) => l + "\n").join("");
  renderRotation(rot);
}

// stageTexts say what each stage means and what comes next, in the
// panel's own terms (its buttons).
const stageTexts = {
  none: "No rotation open: agents trust the management CA above. Start a rotation when the CA must change (expiry, a suspected key leak, a stronger key).",
  started: "Started: agents are handed both CAs (the bundle); the server certificate is still from the current CA. Give every agent the bundle (Download CA bundle, or the install lines below), then Switch.",
  switched: "Switched: the server certificate is from the next CA, with a cross-certificate for agents that trust only the current one. Once every agent has the bundle or the next CA, Finish retires the old CA.",
};

function renderRotation(rot) {
  const box = $("#rotation");
  box.hidden = false;
  const info = $("#rotation-info");
  info.replaceChildren();
  const forms = ["#rotation-start-form", "#rotation-switch-form", "#rotation-finish-form", "#rotation-abort-box"];
  for (const f of forms) $(f).hidden = true;
  $("#rotation-agents").hidden = true;
  const stage = $("#rotation-stage");
  if (!rot) {
    stage.dataset.stage = "";
    stage.textContent = "CA rotation applies to MANAGEMENT_TLS_MODE=auto only: this server does not use the p2ptls management CA.";
    return;
  }
  stage.dataset.stage = rot.stage;
  stage.replaceChildren(el("span", { class: "badge badge-stage-" + rot.stage, id: "rotation-stage-name" }, rot.stage), " ",
    stageTexts[rot.stage] || "");
  kv(info, "Current CA SHA-256", el("code", {}, rot.current.fingerprint_sha256), "rotation-current-fp");
  if (rot.next) {
    kv(info, "Next CA SHA-256", el("code", {}, rot.next.fingerprint_sha256), "rotation-next-fp");
    kv(info, "Next CA expires", fmtTime(rot.next.not_after));
    kv(info, "Started", fmtTime(rot.started_at));
    if (rot.switched_at) kv(info, "Switched", fmtTime(rot.switched_at));
    kv(info, "Overlap deadline", fmtTime(rot.overlap_deadline) + (rot.overdue ? " — passed: finish or abort the rotation" : ""),
      "rotation-deadline", rot.overdue ? "error" : "");
  }
  kv(info, "Server certificate from", rot.served_by === rot.current.fingerprint_sha256 ? "the current CA" : "the next CA", "rotation-served-by");
  if (rot.last_rotation) {
    const l = rot.last_rotation;
    kv(info, "Last rotation", l.outcome + " " + fmtTime(l.ended_at) + (l.retired ? " (" + l.retired + ")" : ""), "rotation-last");
  }
  if (rot.agents && rot.agents.length) {
    const yes = (b) => el("span", { class: b ? "badge badge-valid" : "badge badge-failed" }, b ? "yes" : "no");
    $("#rotation-agents tbody").replaceChildren(...rot.agents.map((a) =>
      el("tr", { "data-kind": a.kind }, el("td", {}, a.kind), el("td", {}, yes(a.verifies_now)), el("td", {}, yes(a.survives_finish)), el("td", {}, a.action))));
    $("#rotation-agents").hidden = false;
  }
  switch (rot.stage) {
    case "started":
      $("#rotation-confirm-label").hidden = rot.current.cross_verifiable;
      $("#rotation-confirm").checked = false;
      $("#rotation-switch-form").hidden = false;
      $("#rotation-abort-box").hidden = false;
      break;
    case "switched":
      $("#rotation-keep-key").checked = false;
      $("#rotation-finish-form").hidden = false;
      $("#rotation-abort-box").hidden = false;
      break;
    default:
      $("#rotation-start-form").hidden = false;
  }
}

// stepNotices are the notices after each step (changed, or run again).
const stepNotices = {
  start: ["Rotation started: /ca.crt and the agent install lines now hand out both CAs. Give every agent the bundle, then Switch.",
    "The rotation was already started; nothing changed."],
  switch: ["Switched: the server certificate is from the next CA. Once every agent has the bundle or the next CA, Finish.",
    "The rotation was already switched; nothing changed."],
  finish: ["Rotation finished: the new CA is the management CA. An agent that trusts only the old one must be given it (the install lines below).",
    "The rotation was already finished; nothing changed."],
  abort: ["Rotation aborted: the current CA alone is served and handed out. An agent given only the next CA needs the current one again.",
    "The rotation was already aborted; nothing changed."],
};

// rotationStep posts one step; the answer is the panel after it.
async function rotationStep(step, body, button) {
  $("#mgmt-error").hidden = true;
  $("#mgmt-notice").hidden = true;
  button.disabled = true;
  try {
    const doc = await api("POST", "/management/rotation/" + step, body);
    renderMgmt(doc);
    mgmtNotice(stepNotices[step][doc.changed ? 0 : 1]);
  } catch (err) {
    mgmtError(err);
    // A refusal often means the page was behind (a step done elsewhere):
    // show the stage as it is, the error above it.
    try { renderMgmt(await api("GET", "/management")); } catch (e) { /* the error shown says enough */ }
  } finally {
    button.disabled = false;
  }
}

$("#rotation-start-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  rotationStep("start", { overlap: $("#rotation-overlap").value.trim() }, $("#rotation-start"));
});
$("#rotation-switch-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = $("#rotation-confirm-label").hidden ? undefined : { confirm_agents_updated: $("#rotation-confirm").checked };
  rotationStep("switch", body, $("#rotation-switch"));
});
$("#rotation-finish-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const keep = $("#rotation-keep-key").checked;
  if (!(await confirmAction("Finish the rotation? The old CA is retired" + (keep ? "" : " and its key deleted") +
    ": an agent that trusts only the old CA stops verifying management TLS.", "Finish rotation"))) return;
  rotationStep("finish", { keep_old_key: keep }, $("#rotation-finish"));
});
$("#rotation-abort").addEventListener("click", async () => {
  if (!(await confirmAction("Abort the rotation? The next CA is dropped (its key deleted): an agent given only the next CA must be given the current one again.",
    "Abort rotation"))) return;
  rotationStep("abort", undefined, $("#rotation-abort"));
});

// Wiring ----------------------------------------------------------------

$("#add-mapping").addEventListener("click", () => openMappingForm());
$("#action-error-close").addEventListener("click", () => { $("#action-error").hidden = true; });
$("#reload").addEventListener("click", load);
$("#cert-pem-copy").addEventListener("click", copyPEM);
form.addEventListener("submit", submitMapping);
form.addEventListener("change", syncForm);
form.hosts.addEventListener("input", syncForm);
$("#dns-form").addEventListener("submit", submitDNS);
load();
