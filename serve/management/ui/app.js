// p2ptls management UI: reads and changes everything through /api/v1.
// Data is only ever put into the page with textContent (see el).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);

// api calls /api/v1 with the session cookie; changes carry the CSRF token.
async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
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
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
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
  return days < 0 ? "expired" : days + " days left";
}

function showError(target, err) {
  target.textContent = err.message + (err.hint ? " — " + err.hint : "");
  target.hidden = false;
}

function pageError(err) { showError($("#page-error"), err); }

// Dialogs ---------------------------------------------------------------

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
    d.showModal();
  });
}

// The TLS page ----------------------------------------------------------

let listeners = [];
let credentials = [];

async function load() {
  $("#page-error").hidden = true;
  // The management panel fails on its own: its error does not hide the
  // rest. Both render together, once everything is read.
  const mgmt = api("GET", "/management").then((doc) => ({ doc }), (err) => ({ err }));
  try {
    const [status, ls, maps, creds] = await Promise.all([
      api("GET", "/status"), api("GET", "/listeners"), api("GET", "/mappings"), api("GET", "/dns-credentials"),
    ]);
    listeners = ls;
    credentials = creds;
    renderTLS(status, ls, maps);
    renderDNS(creds);
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

function renderTLS(status, ls, maps) {
  $("#serve-state").textContent = status.serve_running
    ? "serve is running (pid " + status.pid + "), " + status.reloads + " reloads" +
      (status.last_reload_error ? "; last reload failed: " + status.last_reload_error : "") +
      backoffSummary(status.acme_backoff)
    : "serve is not running";
  const box = $("#listeners");
  box.replaceChildren();
  if (ls.length === 0) {
    box.append(el("p", { class: "muted" }, "No HTTPS listener yet: add one with 'p2ptls listener add'."));
  }
  const byID = {};
  for (const m of maps) byID[m.id] = m;
  const running = {};
  for (const l of status.listeners || []) running[l.name] = l;
  for (const l of ls) {
    const st = running[l.name];
    const sec = el("section", { class: "listener", "data-listener": l.name },
      el("h3", {}, l.name + " ", el("span", { class: "muted" }, l.addr + (l.http_addr ? " · http " + l.http_addr : "") + " · fallback " + l.fallback)));
    if (st && st.error) sec.append(el("p", { class: "error" }, "Not listening: " + st.error));
    if (st && st.fallback_total > 0) sec.append(fallbackBanner(st));
    const rows = maps.filter((m) => m.listener === l.name).map((m) => mappingRow(m, byID));
    if (rows.length === 0) {
      sec.append(el("p", { class: "muted" }, "No mappings."));
    } else {
      sec.append(el("table", { class: "mappings" },
        el("thead", {}, el("tr", {}, ["Hosts", "Source", "Challenge", "Status", "Expires", "Next renewal", "Last attempt", "Last error", "Actions"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
    }
    box.append(sec);
  }
}

// backoffSummary is serve's count of the ACME mappings backing off, as
// "p2ptls status" prints it; "" until serve's first renewal pass counted.
function backoffSummary(b) {
  if (!b) return "";
  if (b.rate_limited + b.account_paused + b.failed === 0) return "; ACME back-off: none";
  return "; ACME back-off: " + b.rate_limited + " rate limited, " + b.account_paused + " account paused, " +
    b.failed + " failed, earliest retry " + fmtTime(b.earliest_retry_at) + " (counted " + fmtTime(b.counted_at) + ")";
}

function fallbackBanner(st) {
  const names = Object.entries(st.fallback_hits || {}).sort((a, b) => b[1] - a[1])
    .map(([sni, n]) => el("li", {}, (sni === "" ? "(no SNI)" : sni) + ": " + n));
  return el("div", { class: "banner", role: "alert" },
    el("strong", {}, "This listener served its fallback certificate " + st.fallback_total + " times since serve started."),
    " Clients asked for names no mapping covers:",
    el("ul", { class: "fallback-names" }, names));
}

// servedBy says which wildcard mapping serves m's hosts while m has no
// usable certificate (served_by; absent from older servers).
function servedBy(m, byID) {
  if (!m.served_by) return null;
  const w = byID[m.served_by];
  const text = w ? "served meanwhile by " + w.hosts.join(", ") + " (mapping " + w.id + ")"
    : "served meanwhile by mapping " + m.served_by;
  return el("div", { class: "muted served-by" }, text);
}

function mappingRow(m, byID) {
  const actions = el("td", { class: "actions" },
    el("button", { type: "button", class: "secondary", onclick: () => showCert(m.id, m) }, "Details"));
  if (m.source === "acme" || m.source === "self-signed") {
    const label = m.source === "acme" ? "Issue/renew now" : "Regenerate";
    actions.append(el("button", { type: "button", onclick: (ev) => issue(m.id, ev.target) }, label));
  }
  actions.append(el("button", { type: "button", class: "danger", onclick: () => removeMapping(m) }, "Remove"));
  return el("tr", { "data-id": m.id },
    el("td", { class: "hosts" }, m.hosts.join(", ")),
    el("td", {}, m.source),
    el("td", {}, m.challenge ? m.challenge + (m.dns_credential ? " (" + m.dns_credential + ")" : "") : "—"),
    el("td", {}, el("span", { class: "badge badge-" + m.status }, m.status), servedBy(m, byID || {})),
    el("td", {}, fmtTime(m.not_after), el("br"), el("span", { class: "muted" }, daysLeft(m.not_after))),
    el("td", {}, fmtTime(m.next_renewal_at)),
    el("td", {}, fmtTime(m.last_attempt_at)),
    el("td", { class: "error" }, m.last_error || "", backoffNote(m)),
    actions);
}

// backoffReasons say, for a table, why a mapping waits (backoff_reason).
const backoffReasons = {
  rate_limited: "rate limited until",
  account_paused: "account paused; retries once a day, next",
  failed: "retries from",
};

// backoffNote is the line under the error of a mapping backing off:
// "rate limited until …" (absent from older servers: nothing).
function backoffNote(m) {
  if (!m.backoff_reason || !m.retry_at) return null;
  const what = backoffReasons[m.backoff_reason] || "backing off until";
  return el("div", { class: "muted backoff", "data-reason": m.backoff_reason }, what + " " + fmtTime(m.retry_at));
}

async function issue(id, button) {
  button.disabled = true;
  const old = button.textContent;
  button.textContent = "Working…";
  try {
    await api("POST", "/mappings/" + encodeURIComponent(id) + "/issue");
  } catch (err) {
    pageError(err);
  }
  button.textContent = old;
  button.disabled = false;
  await load();
}

async function removeMapping(m) {
  if (!(await confirmAction("Remove mapping " + m.id + " (" + m.hosts.join(", ") + ")? Its certificate stops being served."))) return;
  try {
    await api("DELETE", "/mappings/" + encodeURIComponent(m.id));
  } catch (err) {
    pageError(err);
  }
  await load();
}

async function showCert(id, m) {
  const d = $("#cert-dialog");
  const dl = $("#cert-details");
  $("#cert-id").textContent = id;
  dl.replaceChildren();
  $("#cert-chain").replaceChildren();
  // The last attempt's error in full and the back-off, before the
  // certificate (which a failed mapping may not have).
  if (m && m.last_error) {
    dl.append(el("dt", {}, "Last error"), el("dd", { class: "error", "data-field": "Last error" }, m.last_error));
    if (m.last_error_detail && m.last_error_detail !== m.last_error) {
      dl.append(el("dt", {}, "Error detail"), el("dd", { "data-field": "Error detail" }, el("pre", { class: "error-detail" }, m.last_error_detail)));
    }
  }
  if (m && m.backoff_reason && m.retry_at) {
    dl.append(el("dt", {}, "Backing off"), el("dd", { "data-field": "Backing off" }, m.backoff_reason.replace("_", " ") + " until " + fmtTime(m.retry_at)));
  }
  if (m && m.profile) dl.append(el("dt", {}, "Profile"), el("dd", { "data-field": "Profile" }, m.profile));
  if (m && m.ari_window_start && m.ari_window_end) {
    dl.append(el("dt", {}, "Renewal window"), el("dd", { "data-field": "Renewal window" },
      fmtTime(m.ari_window_start) + " to " + fmtTime(m.ari_window_end)));
  }
  // The CA's explanation page is a link only when it is http(s): the URL
  // comes from the ACME server, not from the operator.
  if (m && /^https?:\/\//i.test(m.ari_explanation_url || "")) {
    dl.append(el("dt", {}, "CA's explanation"), el("dd", { "data-field": "CA's explanation" },
      el("a", { href: m.ari_explanation_url, rel: "noopener noreferrer", target: "_blank" }, m.ari_explanation_url)));
  }
  try {
    const c = await api("GET", "/certificates/" + encodeURIComponent(id));
    const rows = [
      ["Subject", c.subject], ["SANs", (c.dns_names || []).concat(c.ip_addresses || []).join(", ")],
      ["Issuer", c.issuer], ["Serial", c.serial], ["Key type", c.key_type],
      ["SHA-256 fingerprint", c.fingerprint_sha256], ["Valid from", fmtTime(c.not_before)],
      ["Valid until", fmtTime(c.not_after) + " (" + daysLeft(c.not_after) + ")"], ["Status", c.status],
    ];
    for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", { "data-field": k }, v || "—"));
    for (const cc of c.chain || []) {
      $("#cert-chain").append(el("li", {}, cc.subject, el("br"),
        el("span", { class: "muted" }, "issued by " + cc.issuer + " · until " + fmtTime(cc.not_after)), el("br"),
        el("code", {}, cc.fingerprint_sha256)));
    }
  } catch (err) {
    dl.append(el("dt", {}, "Error"), el("dd", { class: "error" }, err.message + (err.hint ? " — " + err.hint : "")));
  }
  d.showModal();
}

// The add-mapping modal -------------------------------------------------

const form = $("#mapping-form");

function hostsOf() {
  return form.hosts.value.split(/[\s,]+/).filter((h) => h !== "");
}

// syncForm shows the fields of the chosen source; a wildcard forces DNS-01.
function syncForm() {
  const source = form.source.value;
  for (const div of form.querySelectorAll("[data-source]")) div.hidden = div.dataset.source !== source;
  const wildcard = hostsOf().some((h) => h.startsWith("*."));
  for (const o of form.challenge.options) o.disabled = wildcard && o.value !== "dns-01";
  if (wildcard) form.challenge.value = "dns-01";
  $("#wildcard-note").hidden = !wildcard;
  $("#dns-cred-label").hidden = form.challenge.value !== "dns-01";
}

function openMappingForm() {
  form.reset();
  $("#mapping-error").hidden = true;
  form.listener.replaceChildren(...listeners.map((l) => el("option", { value: l.name }, l.name)));
  form.dns_credential.replaceChildren(...credentials.map((c) =>
    el("option", { value: c.name, disabled: !c.enabled }, c.name + " (" + c.provider + (c.enabled ? "" : ", disabled") + ")")));
  syncForm();
  loadProfiles();
  $("#mapping-dialog").showModal();
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

async function submitMapping(ev) {
  ev.preventDefault();
  const errBox = $("#mapping-error");
  errBox.hidden = true;
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
  const submit = $("#mapping-submit");
  submit.disabled = true;
  try {
    const added = await api("POST", "/mappings", body);
    $("#mapping-dialog").close();
    if (added.warnings && added.warnings.length) pageError({ message: added.warnings.join("; ") });
    await load();
  } catch (err) {
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

$("#add-mapping").addEventListener("click", openMappingForm);
$("#reload").addEventListener("click", load);
form.addEventListener("submit", submitMapping);
form.addEventListener("change", syncForm);
form.hosts.addEventListener("input", syncForm);
$("#dns-form").addEventListener("submit", submitDNS);
load();
