/* account.js: the customer pages: overview, API keys, usage, profile and support (billing: billing.js). */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;
  const PALETTE = ["#0172ad", "#d93526", "#2a9d8f", "#e9a23b", "#8e44ad", "#5d6d7e", "#c0392b", "#16a085"];

  /* ---------- overview ---------- */

  function chartDatasets(summary, field, scale) {
    return summary.models.map((m, i) => ({
      label: m.model,
      data: m[field].map((v) => v / scale),
      backgroundColor: PALETTE[i % PALETTE.length],
      borderRadius: 3,
      maxBarThickness: 28,
    }));
  }

  function drawChart(canvas, labels, datasets, money) {
    const old = window.Chart.getChart(canvas);
    if (old) old.destroy();
    const muted = getComputedStyle(document.documentElement).getPropertyValue("--pico-muted-color").trim() || "#666";
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels.map((d) => d.slice(5)), datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, color: muted } },
          tooltip: {
            callbacks: {
              label: (ctx) => `${ctx.dataset.label}: ${money ? MG.usd(Math.round(ctx.parsed.y * 1e6)) : MG.int(ctx.parsed.y)}`,
            },
          },
        },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { color: muted, maxRotation: 0, autoSkipPadding: 8 } },
          y: {
            stacked: true,
            beginAtZero: true,
            ticks: {
              color: muted,
              precision: money ? undefined : 0,
              // small amounts as "$0.00006", not "6.0E-5"
              callback: (v) => (money ? "$" + Number(v).toLocaleString("en-US", { maximumSignificantDigits: 3 }) : MG.int(v)),
            },
          },
        },
      },
    });
  }

  MG.pages.overview = async function (main) {
    const stat = (name) => MG.$(main, `[data-stat=${name}]`);
    const errorBox = MG.$(main, "[data-form-error]");
    const [billing, summary] = await Promise.all([
      MG.api("GET", "/api/billing").catch((err) => { MG.showError(errorBox, err); return null; }),
      MG.api("GET", "/api/usage/summary?days=30").catch((err) => { MG.showError(errorBox, err); return null; }),
    ]);
    for (const el of MG.$$(main, "[data-stat]")) el.removeAttribute("aria-busy");
    if (billing) stat("balance").textContent = MG.usd(billing.balance_micros);
    if (!summary) return;
    stat("spend").textContent = MG.usd(summary.total_spend_micros);
    stat("requests").textContent = MG.int(summary.total_requests);
    if (!summary.total_requests) {
      MG.$(main, "[data-empty]").hidden = false;
      MG.$(main, "[data-snippet]").textContent = MG.sdkSnippet("YOUR_API_KEY");
      return;
    }
    MG.$(main, "[data-charts]").hidden = false;
    MG.$(main, "[data-models-section]").hidden = false;
    const totals = summary.models.map((m) => ({
      model: m.model,
      requests: m.requests.reduce((a, b) => a + b, 0),
      spend: m.spend_micros.reduce((a, b) => a + b, 0),
    })).sort((a, b) => b.spend - a.spend || b.requests - a.requests);
    MG.fillRows(MG.$(main, "[data-models]"), totals, (t) => h("tr", {},
      h("td", {}, t.model), h("td", { class: "num" }, MG.int(t.requests)), h("td", { class: "num" }, MG.usd(t.spend))), "");
    await MG.loadScript(MG.chartSrc());
    drawChart(MG.$(main, "#chart-spend"), summary.days, chartDatasets(summary, "spend_micros", 1e6), true);
    drawChart(MG.$(main, "#chart-requests"), summary.days, chartDatasets(summary, "requests", 1), false);
  };

  MG.chartSrc = () => document.querySelector("meta[name=mg-chart-src]").content;

  MG.sdkSnippet = (key) => [
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${location.origin}/v1", api_key="${key}")`,
    'reply = client.chat.completions.create(model="MODEL", messages=[{"role": "user", "content": "Hello"}])',
    "print(reply.choices[0].message.content)",
  ].join("\n");

  /* ---------- API keys ---------- */

  function keyStatus(k) {
    if (k.revoked_at) return MG.badge("revoked", "bad");
    if (k.expires_at && new Date(k.expires_at) <= new Date()) return MG.badge("expired", "bad");
    return MG.badge("active", "ok");
  }

  const PERIOD_WORD = { day: "a day", week: "a week", month: "a month" };

  function budgetText(k) {
    const parts = [];
    if (k.budget_micros !== null && k.budget_micros !== undefined) parts.push(`${MG.usd(k.budget_micros)} ${PERIOD_WORD[k.budget_period] || k.budget_period}`);
    if (k.lifetime_budget_micros !== null && k.lifetime_budget_micros !== undefined) parts.push(`${MG.usd(k.lifetime_budget_micros)} in all`);
    return parts.join(", ");
  }

  // The budget fields of a form as the API takes them: empty amounts are null (no such budget).
  function budgetBody(v, forEdit) {
    const body = {};
    if (v.budget_usd || forEdit) {
      body.budget_usd = v.budget_usd || null;
      body.budget_period = v.budget_usd ? v.budget_period : null;
    }
    if (v.lifetime_budget_usd || forEdit) body.lifetime_budget_usd = v.lifetime_budget_usd || null;
    return body;
  }

  // "60 requests/min, 100,000 tokens/min, 4 at a time"; "" when the object sets none
  MG.limitsText = function (limits) {
    if (!limits) return "";
    const parts = [];
    if (limits.rpm !== null) parts.push(`${MG.int(limits.rpm)} requests/min`);
    if (limits.tpm !== null) parts.push(`${MG.int(limits.tpm)} tokens/min`);
    if (limits.max_concurrency !== null) parts.push(`${MG.int(limits.max_concurrency)} at a time`);
    return parts.join(", ");
  };

  // The limit fields of a form as the API takes them: whole numbers, an empty field is `empty`.
  MG.limitsBody = function (v, empty) {
    const body = {};
    for (const name of ["rpm", "tpm", "max_concurrency"]) {
      if (v[name]) body[name] = Number(v[name]);
      else if (empty !== undefined) body[name] = empty;
    }
    return body;
  };

  const micros = (m) => (m === null || m === undefined ? "" : String(Number(m) / 1e6));

  let shownKeys = [];

  async function loadKeys(main) {
    const tbody = MG.$(main, "[data-keys]");
    const data = await MG.api("GET", "/api/keys");
    const keys = Array.isArray(data) ? data : data.items || data.keys || [];
    shownKeys = keys;
    MG.fillRows(tbody, keys, (k) => {
      const live = !k.revoked_at;
      const revoke = live ? h("button", { type: "button", class: "secondary outline", "data-action": "revoke", "data-id": k.id, "aria-label": `Revoke key ${k.name}` }, "Revoke") : null;
      const budget = live ? h("button", { type: "button", class: "secondary outline", "data-action": "budget", "data-id": k.id, "aria-label": `Budget of key ${k.name}` }, "Budget") : null;
      return h("tr", { "data-key-id": k.id },
        h("td", {}, k.name || "—"),
        h("td", {}, h("code", {}, (k.prefix || "") + "…")),
        h("td", { class: "wrap" }, k.models && k.models.length ? k.models.join(", ") : h("span", { class: "muted" }, "all models")),
        h("td", { class: "wrap", "data-budget": "" }, budgetText(k) || h("span", { class: "muted" }, "none")),
        h("td", { class: "wrap", "data-limits": "" }, MG.limitsText(k.limits) || h("span", { class: "muted" }, "account's")),
        h("td", {}, MG.date(k.created_at)),
        h("td", {}, k.expires_at ? MG.date(k.expires_at) : h("span", { class: "muted" }, "never")),
        h("td", {}, keyStatus(k)),
        h("td", {}, h("div", { class: "actions" }, budget, " ", revoke)));
    }, "No API keys yet. Create one above.");
  }

  MG.pages.keys = async function (main) {
    const form = MG.$(main, "#key-form");
    const box = MG.$(main, "[data-secret-box]");
    MG.onSubmit(form, async (v) => {
      const models = v.models ? v.models.split(",").map((s) => s.trim()).filter(Boolean) : null;
      const body = { name: v.name, models, ...budgetBody(v, false), ...MG.limitsBody(v) };
      if (v.expires_on) body.expires_at = `${v.expires_on}T23:59:59Z`;
      const created = await MG.api("POST", "/api/keys", body);
      const secret = created.secret || created.key;
      MG.$(box, "[data-secret]").value = secret;
      MG.$(box, "[data-secret-name]").textContent = v.name;
      MG.$(box, "[data-secret-snippet]").textContent = MG.sdkSnippet(secret);
      MG.$(box, "[data-copy-status]").textContent = "";
      box.hidden = false;
      form.reset();
      MG.$(box, "[data-secret]").select();
      box.scrollIntoView({ block: "nearest" });
      await loadKeys(main);
    });
    const budgetBox = MG.$(main, "[data-budget-box]");
    const budgetForm = MG.$(main, "#budget-form");
    MG.onSubmit(budgetForm, async (v) => {
      const key = await MG.api("PATCH", `/api/keys/${v.key_id}`, budgetBody(v, true));
      budgetBox.hidden = true;
      MG.toast(`Budget of “${key.name || "key"}” saved: ${budgetText(key) || "none"}.`);
      await loadKeys(main);
    });
    main.addEventListener("click", async (event) => {
      const btn = event.target.closest("button[data-action]");
      if (!btn) return;
      if (btn.dataset.action === "budget") {
        const k = shownKeys.find((x) => String(x.id) === btn.dataset.id);
        if (!k) return;
        MG.clearFormError(budgetForm);
        budgetForm.elements.key_id.value = k.id;
        budgetForm.elements.budget_usd.value = micros(k.budget_micros);
        budgetForm.elements.budget_period.value = k.budget_period || "day";
        budgetForm.elements.lifetime_budget_usd.value = micros(k.lifetime_budget_micros);
        MG.$(budgetBox, "[data-budget-name]").textContent = k.name || k.prefix;
        budgetBox.hidden = false;
        budgetForm.elements.budget_usd.focus();
        budgetBox.scrollIntoView({ block: "nearest" });
      }
      if (btn.dataset.action === "hide-budget") budgetBox.hidden = true;
      if (btn.dataset.action === "copy-secret") MG.copy(MG.$(box, "[data-secret]").value, MG.$(box, "[data-copy-status]"));
      if (btn.dataset.action === "hide-secret") {
        MG.$(box, "[data-secret]").value = "";
        MG.$(box, "[data-secret-snippet]").textContent = "";
        box.hidden = true;
      }
      if (btn.dataset.action === "revoke") {
        const name = btn.closest("tr").firstChild.textContent;
        if (!window.confirm(`Revoke the key “${name}”? Requests using it stop working at once. This cannot be undone.`)) return;
        MG.busy(btn, true);
        try {
          await MG.api("DELETE", `/api/keys/${btn.dataset.id}`);
          MG.toast(`Key “${name}” revoked.`);
          await loadKeys(main);
        } catch (err) {
          MG.showError(MG.$(main, "[data-list-error]"), err);
          MG.busy(btn, false);
        }
      }
    });
    try {
      await loadKeys(main);
    } catch (err) {
      MG.fillRows(MG.$(main, "[data-keys]"), [], null, "Could not load your keys.");
      MG.showError(MG.$(main, "[data-list-error]"), err);
    }
  };

  /* ---------- paginated tables (usage, billing ledger, admin usage) ---------- */

  // Keeps page state, renders "page X of Y", and reloads through `load(page)`.
  MG.pager = function (main, load) {
    const nav = MG.$(main, "[data-pager]");
    const state = { page: 1, pages: 1 };
    nav.addEventListener("click", (event) => {
      const btn = event.target.closest("button[data-action]");
      if (!btn) return;
      const page = state.page + (btn.dataset.action === "next" ? 1 : -1);
      if (page >= 1 && page <= state.pages) load(page);
    });
    return {
      update(data) {
        state.page = data.page || 1;
        state.pages = Math.max(1, Math.ceil((data.total || 0) / (data.page_size || 1)));
        nav.hidden = !data.total;
        MG.$(nav, "[data-page-info]").textContent = `Page ${state.page} of ${state.pages} · ${MG.int(data.total)} rows`;
        MG.$(nav, "[data-action=prev]").disabled = state.page <= 1;
        MG.$(nav, "[data-action=next]").disabled = state.page >= state.pages;
      },
    };
  };

  // Filters live in the address bar too, so a filtered view can be reloaded or shared.
  MG.filterParams = function (form) {
    const v = MG.values(form);
    const out = {};
    for (const [k, val] of Object.entries(v)) if (val) out[k] = val;
    return out;
  };

  MG.fillFilters = function (form) {
    const q = new URLSearchParams(location.search);
    for (const el of form.elements) if (el.name && q.has(el.name)) el.value = q.get(el.name);
  };

  MG.statusBadge = (code) => MG.badge(String(code), code >= 200 && code < 300 ? "ok" : code === 499 ? "warn" : "bad");

  function usageRow(r, keyNames) {
    const tokens = `${MG.int(r.prompt_tokens)} / ${MG.int(r.completion_tokens)}`;
    return h("tr", {},
      h("td", {}, MG.time(r.created_at)),
      h("td", {}, r.model),
      h("td", {}, r.key_id ? keyNames[r.key_id] || r.key_name || `#${r.key_id}` : "—"),
      h("td", { class: "num" }, tokens, r.usage_estimated ? h("span", { class: "muted", title: "estimated: the provider reported no usage" }, " est.") : null),
      h("td", { class: "num" }, MG.usd(r.cost_micros)),
      h("td", {}, MG.statusBadge(r.status_code)),
      h("td", { class: "num" }, r.latency_ms !== undefined && r.latency_ms !== null ? `${MG.int(r.latency_ms)} ms` : "—"));
  }

  MG.pages.usage = async function (main) {
    const form = MG.$(main, "#usage-filters");
    const tbody = MG.$(main, "[data-rows]");
    const csv = MG.$(main, "[data-csv]");
    const errorBox = MG.$(main, "[data-form-error]");
    const keyNames = {};
    MG.fillFilters(form);
    try {
      const data = await MG.api("GET", "/api/keys");
      const keys = Array.isArray(data) ? data : data.items || data.keys || [];
      const select = form.elements.key_id;
      const wanted = new URLSearchParams(location.search).get("key_id");
      for (const k of keys) {
        keyNames[k.id] = k.name || `#${k.id}`;
        select.append(h("option", { value: k.id, selected: String(k.id) === wanted }, `${k.name} (${k.prefix}…)`));
      }
    } catch (err) {
      MG.showError(errorBox, err);
    }
    const pager = MG.pager(main, (page) => load(page));
    async function load(page) {
      errorBox.hidden = true;
      const filters = MG.filterParams(form);
      history.replaceState(null, "", "/usage" + MG.query(filters));
      csv.href = "/api/usage.csv" + MG.query(filters);
      MG.loadingRow(tbody, "Loading usage…");
      try {
        const data = await MG.api("GET", "/api/usage" + MG.query({ ...filters, page, page_size: 50 }));
        const hasFilters = Object.keys(filters).length > 0;
        MG.fillRows(tbody, data.items, (r) => usageRow(r, keyNames),
          hasFilters ? "No requests match these filters." : "No requests yet. They appear here within a second of being made.");
        pager.update(data);
      } catch (err) {
        MG.fillRows(tbody, [], null, "Could not load usage.");
        MG.showError(errorBox, err);
      }
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); load(1); });
    await load(1);
  };

  /* ---------- profile ---------- */

  function showProfile(main, me) {
    const form = MG.$(main, "#profile-form");
    form.elements.username.value = me.username || "";
    form.elements.email.value = me.email || "";
    const pending = MG.$(main, "[data-pending-email]");
    pending.hidden = !me.pending_email;
    if (me.pending_email) {
      pending.replaceChildren(h("strong", {}, "Email change pending. "),
        `We sent a confirmation link to ${me.pending_email}. Until you open it, your account keeps using ${me.email}.`);
    }
    MG.$(main, "[data-created]").textContent = MG.date(me.created_at);
  }

  MG.pages.profile = async function (main, me) {
    showProfile(main, me);
    const form = MG.$(main, "#profile-form");
    MG.onSubmit(form, async (v) => {
      const changes = {};
      if (v.username !== me.username) changes.username = v.username;
      if (v.email.toLowerCase() !== (me.email || "").toLowerCase() && v.email !== me.pending_email) changes.email = v.email;
      if (!Object.keys(changes).length) { MG.toast("Nothing to save: no field changed."); return; }
      await MG.api("PATCH", "/api/me", changes);
      me = await MG.loadMe();
      showProfile(main, me);
      MG.$$(document, "[data-me-name]").forEach((el) => { el.textContent = "Signed in as " + me.username; });
      MG.toast(changes.email ? `Check ${changes.email} for a confirmation link.` : "Saved.");
    });
    const pw = MG.$(main, "#password-form");
    pw.elements.username.value = me.username || "";
    MG.onSubmit(pw, async () => {
      const next = pw.elements.new_password.value;
      if (next !== pw.elements.new_password_repeat.value) throw { message: "The two new passwords differ.", param: "new_password_repeat" };
      // every session ends; this browser gets a fresh one (new cookie and CSRF token) in the answer
      const data = await MG.api("POST", "/api/me/password", { current_password: pw.elements.current_password.value, new_password: next });
      pw.reset();
      pw.elements.username.value = me.username || "";
      MG.setCsrf(data && data.csrf_token);
      MG.toast("Password changed. Every other device was signed out.");
    });
  };

  /* ---------- support ---------- */

  const TICKET_STATUS = { open: ["open", "warn"], answered: ["answered", "ok"], closed: ["closed", ""] };
  MG.ticketBadge = (s) => MG.badge(...(TICKET_STATUS[s] || [s, ""]));

  async function loadTickets(main) {
    const data = await MG.api("GET", "/api/tickets");
    const items = Array.isArray(data) ? data : data.items || [];
    MG.fillRows(MG.$(main, "[data-tickets]"), items, (t) => h("tr", {},
      h("td", {}, `#${t.id}`),
      h("td", { class: "wrap" }, h("a", { href: `/support/${t.id}` }, t.subject)),
      h("td", {}, MG.ticketBadge(t.status)),
      h("td", {}, MG.time(t.updated_at || t.created_at))), "No tickets yet.");
  }

  MG.pages.support = async function (main) {
    const form = MG.$(main, "#ticket-form");
    MG.onSubmit(form, async (v) => {
      const created = await MG.api("POST", "/api/tickets", { subject: v.subject, body: v.body });
      form.reset();
      MG.toast(`Ticket #${created.id || (created.ticket && created.ticket.id)} sent. We reply here and by email.`);
      await loadTickets(main);
    });
    try {
      await loadTickets(main);
    } catch (err) {
      MG.fillRows(MG.$(main, "[data-tickets]"), [], null, "Could not load your tickets.");
      MG.showError(MG.$(main, "[data-list-error]"), err);
    }
  };

  // The thread of one ticket; shared by the customer and admin ticket pages.
  MG.renderThread = function (main, data) {
    const ticket = data.ticket || data;
    const messages = data.messages || ticket.messages || [];
    MG.$(main, "[data-ticket-subject]").textContent = `#${ticket.id} · ${ticket.subject}`;
    document.title = `Ticket #${ticket.id} · model-go`;
    const meta = MG.$(main, "[data-ticket-meta]");
    meta.replaceChildren(MG.ticketBadge(ticket.status), ` opened ${MG.datetime(ticket.created_at)}`,
      ticket.username ? ` by ${ticket.username}` : "");
    const thread = MG.$(main, "[data-thread]");
    thread.removeAttribute("aria-busy");
    thread.replaceChildren(...messages.map((m) => h("li", { class: m.from_staff ? "staff" : "" },
      h("div", { class: "who" }, m.from_staff ? "Support" : m.author || ticket.username || "You", " · ", MG.time(m.created_at)),
      h("div", { class: "text" }, m.body))));
  };

  MG.pages.ticket = async function (main) {
    const id = main.dataset.ticketId;
    const load = async () => MG.renderThread(main, await MG.api("GET", `/api/tickets/${id}`));
    const form = MG.$(main, "#reply-form");
    MG.onSubmit(form, async (v) => {
      await MG.api("POST", `/api/tickets/${id}/messages`, { body: v.body });
      form.reset();
      await load();
    });
    try {
      await load();
    } catch (err) {
      MG.$(main, "[data-thread]").removeAttribute("aria-busy");
      MG.showError(MG.$(main, "[data-list-error]"), err);
      form.hidden = true;
    }
  };
})();
