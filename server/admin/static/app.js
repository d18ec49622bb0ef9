// Keyward admin panel. Every action is a call of the public REST API with the
// operator's API key, which lives in sessionStorage only (never in the URL).
"use strict";

const view = document.getElementById("view");
const errorBox = document.getElementById("error");
const KEY = "keyward.apiKey";

function apiKey() { return sessionStorage.getItem(KEY); }

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function showError(msg) { errorBox.textContent = msg; errorBox.hidden = !msg; }

// api calls the REST API and throws the API's own error message.
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + apiKey(), ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { message: text }; }
  if (!res.ok) {
    if (res.status === 401) signOut();
    throw new Error(data.message || res.statusText);
  }
  return data;
}

// stream reads a newline-delimited JSON stream until stop() is called.
function stream(path, onMessage) {
  const ctrl = new AbortController();
  (async () => {
    try {
      const res = await fetch(path, { headers: { "Authorization": "Bearer " + apiKey() }, signal: ctrl.signal });
      if (!res.ok) { showError((await res.json()).message); return; }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) onMessage(JSON.parse(line));
        }
      }
    } catch (e) { if (e.name !== "AbortError") showError(e.message); }
  })();
  return () => ctrl.abort();
}

let stopStream = null;
function leave() { if (stopStream) { stopStream(); stopStream = null; } }

const short = (v, p) => (v || "").replace(p, "").toLowerCase();
const time = (t) => (t ? new Date(t).toISOString().replace("T", " ").slice(0, 19) : "—");
const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

async function guard(fn) {
  showError("");
  try { await fn(); } catch (e) { showError(e.message); }
}

// --- Sign-in -------------------------------------------------------------------

function signIn() {
  document.getElementById("nav").hidden = true;
  const input = el("input", { id: "apikey", type: "password", autocomplete: "off", placeholder: "kw_live_..." });
  view.replaceChildren(
    el("h2", {}, "Sign in"),
    el("p", {}, "Use an admin API key. It is kept in this tab's session storage only."),
    el("form", { id: "signin", onsubmit: (ev) => { ev.preventDefault(); guard(async () => {
      sessionStorage.setItem(KEY, input.value.trim());
      await api("GET", "/v1/keys?page_size=1");
      route();
    }); } },
      el("label", {}, "API key", input), el("button", { type: "submit", id: "signin-submit" }, "Sign in")));
}

function signOut() { sessionStorage.removeItem(KEY); location.hash = ""; signIn(); }
document.getElementById("signout").addEventListener("click", signOut);

// --- Keys ------------------------------------------------------------------------

async function keysPage(pageToken = "") {
  const owner = el("input", { id: "filter-owner", placeholder: "owner" });
  const state = el("select", { id: "filter-state" }, ["", "active", "revoked", "expired"].map((s) => el("option", { value: s }, s || "any state")));
  const table = el("table", { id: "keys" });
  let next = "";
  const load = (token) => guard(async () => {
    const q = new URLSearchParams({ page_size: "20" });
    if (owner.value) q.set("owner", owner.value);
    if (state.value) q.set("state", "KEY_STATE_" + state.value.toUpperCase());
    if (token) q.set("page_token", token);
    const data = await api("GET", "/v1/keys?" + q);
    next = data.next_page_token || "";
    nextButton.disabled = !next;
    table.replaceChildren(el("tr", {}, ["Key id", "Name", "Owner", "Env", "State", "Created", "Expires"].map((h) => el("th", {}, h))),
      ...(data.keys || []).map((k) => el("tr", {},
        el("td", {}, el("a", { href: "#key/" + k.key_id, class: "key-link" }, k.key_id)), el("td", {}, k.name), el("td", {}, k.owner),
        el("td", {}, short(k.environment, "ENVIRONMENT_")),
        el("td", { class: "state-" + short(k.state, "KEY_STATE_") }, short(k.state, "KEY_STATE_")),
        el("td", {}, time(k.create_time)), el("td", {}, time(k.expire_time)))));
  });
  const nextButton = el("button", { type: "button", onclick: () => load(next) }, "Next page");
  view.replaceChildren(el("h2", {}, "API keys"),
    el("div", { class: "toolbar" }, owner, state, el("button", { type: "button", id: "filter", onclick: () => load("") }, "Filter"), nextButton,
      el("button", { type: "button", id: "new-key", onclick: createKeyForm }, "Create key")),
    el("div", { id: "created" }), table);
  await load(pageToken);
}

function createKeyForm() {
  const f = (id, label, attrs = {}) => el("label", {}, label, el("input", { id, name: id, ...attrs }));
  const form = el("form", { id: "create-key", onsubmit: (ev) => { ev.preventDefault(); guard(async () => {
    const v = (id) => form.querySelector("#" + id).value.trim();
    const body = { name: v("k-name"), owner: v("k-owner"), environment: v("k-env"),
      roles: list(v("k-roles")), permissions: list(v("k-perms")), allowed_cidrs: list(v("k-cidrs")),
      allowed_countries: list(v("k-countries")) };
    if (v("k-expires")) body.expire_time = new Date(v("k-expires")).toISOString();
    if (v("k-rps")) body.rate_limit = { requests_per_second: +v("k-rps"), burst: +(v("k-burst") || 0) };
    if (v("k-quota")) body.quota = { limit: v("k-quota"), period: v("k-period") };
    const res = await api("POST", "/v1/keys", body);
    form.remove();
    const code = el("code", { id: "new-secret" }, res.secret);
    document.getElementById("created").replaceChildren(el("div", { class: "secret" },
      el("strong", {}, "Copy this secret now: it is shown only once and cannot be recovered. "),
      el("p", {}, "Key ", el("a", { href: "#key/" + res.key.key_id, id: "new-key-id" }, res.key.key_id), ": "), code, " ",
      el("button", { type: "button", id: "copy-secret", onclick: () => navigator.clipboard.writeText(res.secret) }, "Copy")));
  }); } },
    f("k-name", "Name", { required: "" }), f("k-owner", "Owner", { required: "" }),
    el("label", {}, "Environment", el("select", { id: "k-env" }, el("option", { value: "ENVIRONMENT_LIVE" }, "live"), el("option", { value: "ENVIRONMENT_TEST" }, "test"))),
    f("k-roles", "Roles (comma-separated)"), f("k-perms", "Permissions (comma-separated)"),
    f("k-cidrs", "Allowed CIDRs"), f("k-countries", "Allowed countries (DE, FR)"),
    f("k-expires", "Expires", { type: "datetime-local" }), f("k-rps", "Rate limit (req/s)", { type: "number", min: "1" }),
    f("k-burst", "Burst", { type: "number", min: "0" }), f("k-quota", "Quota", { type: "number", min: "1" }),
    el("label", {}, "Quota period", el("select", { id: "k-period" }, ["QUOTA_PERIOD_DAY", "QUOTA_PERIOD_HOUR", "QUOTA_PERIOD_MONTH", "QUOTA_PERIOD_UNSPECIFIED"].map((p) => el("option", { value: p }, short(p, "QUOTA_PERIOD_").replace("unspecified", "total"))))),
    el("button", { type: "submit", id: "create-submit" }, "Create"));
  document.getElementById("created").replaceChildren(form);
}

// quotaText describes a quota: a limit per calendar period, or in total (no period).
function quotaText(q) {
  if (!q) return "";
  const period = short(q.period, "QUOTA_PERIOD_");
  return period && period !== "unspecified" ? `${q.limit} per ${period}` : `${q.limit} in total`;
}

async function keyPage(id) {
  await guard(async () => {
    const { key } = await api("GET", "/v1/keys/" + encodeURIComponent(id));
    const history = await api("GET", "/v1/keys/" + encodeURIComponent(id) + "/history");
    const row = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v));
    const grace = el("input", { id: "grace", type: "number", min: "0", value: "0", title: "grace period in seconds" });
    const reason = el("input", { id: "revoke-reason", placeholder: "reason" });
    view.replaceChildren(el("h2", {}, "Key ", key.key_id),
      el("table", { id: "key-detail" },
        row("Name", key.name), row("Owner", key.owner), row("Environment", short(key.environment, "ENVIRONMENT_")),
        row("State", el("span", { id: "key-state", class: "state-" + short(key.state, "KEY_STATE_") }, short(key.state, "KEY_STATE_"))),
        row("Roles", (key.roles || []).join(", ")), row("Permissions", (key.permissions || []).join(", ")),
        row("Allowed CIDRs", (key.allowed_cidrs || []).join(", ")), row("Allowed countries", (key.allowed_countries || []).join(", ")),
        row("Denied countries", (key.denied_countries || []).join(", ")),
        row("Rate limit", key.rate_limit ? `${key.rate_limit.requests_per_second}/s, burst ${key.rate_limit.burst || key.rate_limit.requests_per_second}` : ""),
        row("Quota", el("span", { id: "key-quota" }, quotaText(key.quota))),
        row("Token audiences", (key.allowed_audiences || []).join(", ")), row("Max token lifetime", key.max_token_ttl || ""),
        row("Created", time(key.create_time)), row("Expires", time(key.expire_time)), row("Last used", time(key.last_used_time)),
        row("Revoked", time(key.revoke_time)), row("Revoke reason", key.revoke_reason)),
      el("div", { class: "toolbar" }, grace,
        el("button", { type: "button", id: "rotate", onclick: () => guard(async () => {
          const res = await api("POST", `/v1/keys/${key.key_id}:rotate`, { grace_period: grace.value + "s" });
          await keyPage(id);
          view.prepend(el("div", { class: "secret" }, el("strong", {}, "New secret, shown only once: "), el("code", { id: "rotated-secret" }, res.secret)));
        }) }, "Rotate"),
        reason,
        el("button", { type: "button", id: "revoke", onclick: () => guard(async () => {
          if (!confirm(`Revoke key ${key.key_id}? Every secret of it stops working at once. This cannot be undone.`)) return;
          await api("POST", `/v1/keys/${key.key_id}:revoke`, { reason: reason.value });
          await keyPage(id);
        }) }, "Revoke")),
      el("h3", {}, "History"),
      el("table", { id: "history" }, el("tr", {}, ["Time", "Action", "By", "From", "Reason", "Fields"].map((h) => el("th", {}, h))),
        (history.events || []).map((e) => el("tr", {}, el("td", {}, time(e.time)), el("td", {}, e.action), el("td", {}, e.actor_key_id),
          el("td", {}, e.actor_ip), el("td", {}, e.reason), el("td", {}, (e.changed_fields || []).join(", "))))));
  });
}

// --- Roles ---------------------------------------------------------------------

async function rolesPage() {
  await guard(async () => {
    const data = await api("GET", "/v1/roles?page_size=1000");
    const name = el("input", { id: "r-name", placeholder: "name" });
    const desc = el("input", { id: "r-desc", placeholder: "description" });
    const perms = el("input", { id: "r-perms", placeholder: "permissions, comma-separated" });
    view.replaceChildren(el("h2", {}, "Roles"),
      el("form", { id: "create-role", onsubmit: (ev) => { ev.preventDefault(); guard(async () => {
        await api("POST", "/v1/roles", { name: name.value.trim(), description: desc.value, permissions: list(perms.value) });
        await rolesPage();
      }); } }, name, desc, perms, el("button", { type: "submit" }, "Create role")),
      el("table", { id: "roles" }, el("tr", {}, ["Role", "Permissions", "Description", ""].map((h) => el("th", {}, h))),
        (data.roles || []).map((r) => {
          const edit = el("input", { value: (r.permissions || []).join(", "), size: "40" });
          return el("tr", {}, el("td", {}, r.name), el("td", {}, edit), el("td", {}, r.description),
            el("td", {}, el("button", { type: "button", onclick: () => guard(async () => {
              await api("PATCH", `/v1/roles/${r.name}?update_mask=permissions`, { name: r.name, permissions: list(edit.value) });
              await rolesPage();
            }) }, "Save"), " ", el("button", { type: "button", onclick: () => guard(async () => {
              if (!confirm(`Delete role ${r.name}? Keys holding it lose its permissions at once.`)) return;
              await api("DELETE", `/v1/roles/${r.name}`);
              await rolesPage();
            }) }, "Delete")));
        })));
  });
}

// --- Signing keys -------------------------------------------------------------

async function signingPage() {
  await guard(async () => {
    const data = await api("GET", "/v1/signing-keys");
    const alg = el("select", { id: "alg" }, ["SIGNING_ALGORITHM_UNSPECIFIED", "SIGNING_ALGORITHM_RS256", "SIGNING_ALGORITHM_ES256", "SIGNING_ALGORITHM_EDDSA", "SIGNING_ALGORITHM_HS256"]
      .map((a) => el("option", { value: a }, short(a, "SIGNING_ALGORITHM_").replace("unspecified", "server default"))));
    view.replaceChildren(el("h2", {}, "Signing keys"),
      el("div", { class: "toolbar" }, alg, el("button", { type: "button", onclick: () => guard(async () => {
        if (!confirm("Rotate the signing key? New tokens are signed with the new key; old ones stay valid until they expire.")) return;
        await api("POST", "/v1/signing-keys:rotate", { algorithm: alg.value });
        await signingPage();
      }) }, "Rotate")),
      el("table", {}, el("tr", {}, ["kid", "Algorithm", "State", "Created", "Replaced", "Retires"].map((h) => el("th", {}, h))),
        (data.signing_keys || []).map((k) => el("tr", {}, el("td", {}, k.kid), el("td", {}, short(k.algorithm, "SIGNING_ALGORITHM_")),
          el("td", {}, short(k.state, "SIGNING_KEY_STATE_")), el("td", {}, time(k.create_time)), el("td", {}, time(k.deactivate_time)), el("td", {}, time(k.retire_time))))));
  });
}

// --- Audit ---------------------------------------------------------------------

function auditRow(e) {
  return el("tr", {}, el("td", {}, time(e.time)), el("td", {}, e.method || e.http_route), el("td", {}, e.code),
    el("td", {}, e.caller_key_id), el("td", {}, e.subject), el("td", {}, e.client_ip), el("td", {}, e.denial_reason));
}

async function auditPage() {
  const key = el("input", { id: "a-key", placeholder: "caller key id" });
  const code = el("input", { id: "a-code", placeholder: "code, e.g. PERMISSION_DENIED" });
  const table = el("table", { id: "audit" });
  const header = () => el("tr", {}, ["Time", "Method", "Code", "Caller", "Subject", "Client IP", "Denial"].map((h) => el("th", {}, h)));
  const params = () => {
    const q = new URLSearchParams();
    if (key.value) q.set("filter.caller_key_id", key.value.trim());
    if (code.value) q.set("filter.code", code.value.trim().toUpperCase());
    return q;
  };
  const load = () => guard(async () => {
    leave();
    const q = params(); q.set("page_size", "100");
    const data = await api("GET", "/v1/audit-events?" + q);
    table.replaceChildren(header(), ...(data.events || []).map(auditRow));
  });
  const tail = () => {
    leave();
    table.replaceChildren(header());
    stopStream = stream("/v1/audit-events:watch?" + params(), (m) => m.result && table.insertBefore(auditRow(m.result.event), table.children[1] || null));
  };
  view.replaceChildren(el("h2", {}, "Audit log"),
    el("div", { class: "toolbar" }, key, code, el("button", { type: "button", id: "a-filter", onclick: load }, "Filter"),
      el("button", { type: "button", id: "a-tail", onclick: tail }, "Live tail")), table);
  await load();
}

// --- Revocations ---------------------------------------------------------------

function revocationsPage() {
  const feed = el("div", { class: "feed", id: "revocations" });
  view.replaceChildren(el("h2", {}, "Revocations (live)"), feed);
  stopStream = stream("/v1/revocations:watch?after_sequence=0", (m) => {
    const r = m.result || {};
    if (r.event) feed.prepend(el("div", { class: "revocation" },
      `#${r.event.sequence} ${time(r.event.revoke_time)} ${short(r.event.kind, "REVOCATION_KIND_")} ${r.event.subject_id} ${r.event.reason || ""}`));
    if (r.resync) feed.prepend(el("div", {}, "resync: " + r.resync.reason));
  });
}

// --- Routing ---------------------------------------------------------------------

function route() {
  leave();
  showError("");
  if (!apiKey()) return signIn();
  document.getElementById("nav").hidden = false;
  const [page, arg] = location.hash.slice(1).split("/");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === "#" + (page || "keys")));
  switch (page) {
    case "key": return keyPage(arg);
    case "roles": return rolesPage();
    case "signing-keys": return signingPage();
    case "audit": return auditPage();
    case "revocations": return revocationsPage();
    default: return keysPage();
  }
}

window.addEventListener("hashchange", route);
route();
