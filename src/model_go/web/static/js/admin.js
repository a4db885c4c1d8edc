/* admin.js: administrator pages: users, channels, prices, usage, tickets and policy versions. */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;
  const list = (data, key) => (Array.isArray(data) ? data : (data && (data.items || data[key])) || []);
  const listError = (main) => MG.$(main, "[data-list-error], [data-form-error]");

  // Run an action from a table button with a busy state; errors go to the page's error box.
  async function act(main, btn, work) {
    MG.busy(btn, true);
    try {
      await work();
    } catch (err) {
      MG.showError(listError(main), err);
    } finally {
      if (btn.isConnected) MG.busy(btn, false);
    }
  }

  /* ---------- users ---------- */

  MG.pages["admin-users"] = async function (main) {
    const search = MG.$(main, "#user-search");
    const tbody = MG.$(main, "[data-users]");
    const dialog = MG.$(main, "#credit-dialog");
    const creditForm = MG.$(main, "#credit-form");
    const byId = {};
    let creditUser = null;
    MG.fillFilters(search);

    async function load() {
      const q = search.elements.q.value.trim();
      history.replaceState(null, "", "/admin/users" + MG.query({ q }));
      MG.loadingRow(tbody);
      const users = list(await MG.api("GET", "/api/admin/users" + MG.query({ q })), "users");
      MG.fillRows(tbody, users, (u) => {
        byId[u.id] = u;
        const status = u.deleted ? MG.badge("deleted") : u.disabled ? MG.badge("disabled", "bad") : MG.badge("active", "ok");
        const toggle = u.disabled ? "enable" : "disable";
        return h("tr", {},
          h("td", {}, u.id),
          h("td", { class: "wrap" }, h("strong", {}, u.username || "—"), h("br"), h("small", { class: "muted" }, u.email || "")),
          h("td", {}, MG.isAdmin(u) ? MG.badge("admin", "warn") : "customer"),
          h("td", {}, status),
          h("td", { class: "num" }, MG.usd(u.balance_micros)),
          h("td", {}, MG.date(u.created_at)),
          h("td", {}, u.deleted ? null : h("div", { class: "actions" },
            h("button", { type: "button", class: "secondary outline", "data-action": toggle, "data-id": u.id }, toggle === "enable" ? "Enable" : "Disable"),
            h("button", { type: "button", class: "secondary outline", "data-action": "limits", "data-id": u.id, "aria-label": `Rate limits of ${u.username}` }, "Limits"),
            h("button", { type: "button", "data-action": "credit", "data-id": u.id }, "Credit"))));
      }, search.elements.q.value ? "No user matches." : "No users yet.");
    }

    search.addEventListener("submit", (event) => {
      event.preventDefault();
      load().catch((err) => MG.showError(listError(main), err));
    });
    tbody.addEventListener("click", (event) => {
      const btn = event.target.closest("button[data-action]");
      if (!btn) return;
      const user = byId[btn.dataset.id];
      if (btn.dataset.action === "credit") {
        creditUser = user;
        MG.$(dialog, "[data-credit-user]").textContent = user.username || user.email;
        creditForm.reset();
        MG.$(creditForm, "[data-submit-label]").textContent = "Add credit";
        MG.clearFormError(creditForm);
        dialog.showModal();
        return;
      }
      if (btn.dataset.action === "limits") {
        act(main, btn, () => openLimits(user));
        return;
      }
      const verb = btn.dataset.action;
      if (verb === "disable" && !window.confirm(`Disable ${user.username}? Their keys and sessions stop working at once.`)) return;
      act(main, btn, async () => {
        await MG.api("POST", `/api/admin/users/${user.id}/${verb}`);
        MG.toast(`${user.username} ${verb}d.`);
        await load();
      });
    });
    MG.$(dialog, "[data-action=close-dialog]").addEventListener("click", () => dialog.close());

    // Rate limits: the user's tier and their own limits (empty: the tier's), in one dialog.
    const limitsDialog = MG.$(main, "#limits-dialog");
    const limitsForm = MG.$(main, "#limits-form");
    let limitsUser = null;
    let tiers = [];
    const tierHelp = () => {
      const tier = tiers.find((t) => t.name === limitsForm.elements.tier.value);
      MG.$(limitsForm, "[data-tier-limits]").textContent =
        `The tier's limits: ${(tier && MG.limitsText(tier.limits)) || "none"} (tiers are set with model-go tier set or PUT /api/admin/tiers).`;
    };
    async function openLimits(user) {
      const [found, all] = await Promise.all([
        MG.api("GET", `/api/admin/users/${user.id}/limits`),
        MG.api("GET", "/api/admin/tiers"),
      ]);
      limitsUser = user;
      tiers = all;
      const select = limitsForm.elements.tier;
      select.replaceChildren(...tiers.map((t) => h("option", { value: t.name }, t.name)));
      select.value = found.tier;
      for (const name of ["rpm", "tpm", "max_concurrency"]) {
        limitsForm.elements[name].value = found.own[name] === null ? "" : String(found.own[name]);
      }
      tierHelp();
      MG.$(limitsDialog, "[data-limits-user]").textContent = user.username || user.email;
      MG.clearFormError(limitsForm);
      limitsDialog.showModal();
    }
    limitsForm.elements.tier.addEventListener("change", tierHelp);
    MG.$(limitsDialog, "[data-action=close-dialog]").addEventListener("click", () => limitsDialog.close());
    MG.onSubmit(limitsForm, async (v) => {
      await MG.api("PUT", `/api/admin/users/${limitsUser.id}/tier`, { tier: v.tier });
      const saved = await MG.api("PATCH", `/api/admin/users/${limitsUser.id}/limits`, MG.limitsBody(v, null));
      limitsDialog.close();
      MG.toast(`${saved.username}: tier ${saved.tier}; own limits: ${MG.limitsText(saved.own) || "none"}.`);
    });
    const LABELS = { credit: "Add credit", debit: "Debit", refund: "Record refund" };
    creditForm.elements.action.addEventListener("change", () => {
      MG.$(creditForm, "[data-submit-label]").textContent = LABELS[creditForm.elements.action.value];
    });
    MG.onSubmit(creditForm, async (v) => {
      const body = { action: v.action, amount_usd: v.amount_usd, note: v.note };
      await MG.api("POST", `/api/admin/users/${creditUser.id}/adjustments`, body);
      dialog.close();
      MG.toast(`${LABELS[v.action]}: $${v.amount_usd} for ${creditUser.username}.`);
      await load();
    });
    await load();
  };

  /* ---------- channels ---------- */

  MG.pages["admin-channels"] = async function (main) {
    const tbody = MG.$(main, "[data-channels]");
    const form = MG.$(main, "#channel-form");
    const cancel = MG.$(main, "[data-action=cancel-edit]");
    const byId = {};

    function editMode(channel) {
      form.reset();
      MG.clearFormError(form);
      form.elements.id.value = channel ? channel.id : "";
      form.elements.name.readOnly = !!channel;
      form.elements.provider.readOnly = !!channel;
      MG.$(main, "[data-channel-form-title]").textContent = channel ? `Edit channel “${channel.name}”` : "Add a channel";
      MG.$(main, "[data-channel-submit]").textContent = channel ? "Save channel" : "Add channel";
      MG.$(main, "[data-key-hint]").textContent = channel ? "(leave empty to keep the stored key)" : "(stored encrypted)";
      cancel.hidden = !channel;
      if (!channel) return;
      for (const name of ["name", "provider", "base_url", "priority", "weight"]) form.elements[name].value = channel[name] ?? "";
      // a channel's name and provider are fixed once created
      form.elements.models.value = (channel.models || []).join(", ");
      form.elements.enabled.checked = channel.enabled !== false;
      form.scrollIntoView({ block: "start" });
      form.elements.base_url.focus();
    }

    async function load() {
      const channels = list(await MG.api("GET", "/api/admin/channels"), "channels");
      MG.fillRows(tbody, channels, (c) => {
        byId[c.id] = c;
        const cooling = c.enabled && c.cooldown_until && new Date(c.cooldown_until) > new Date();
        const status = !c.enabled ? MG.badge("disabled", "bad")
          : cooling ? MG.badge(`cooling down until ${MG.datetime(c.cooldown_until)}`, "warn") : MG.badge("enabled", "ok");
        const lastError = c.last_error ? h("small", { class: "muted" }, `last error ${MG.datetime(c.last_error_at)}: ${c.last_error}`) : null;
        return h("tr", {},
          h("td", {}, c.id),
          h("td", {}, c.name, c.disabled_reason ? h("br") : null, c.disabled_reason ? h("small", { class: "muted" }, c.disabled_reason) : null),
          h("td", {}, c.provider, h("br"), h("small", { class: "muted" }, c.has_api_key ? "key stored" : "no key")),
          h("td", { class: "wrap" }, (c.models || []).join(", ")),
          h("td", { class: "num" }, c.priority),
          h("td", { class: "num" }, c.weight),
          h("td", {}, status, lastError ? h("br") : null, lastError, h("br"), h("small", { class: "muted", "data-test-result": c.id, role: "status" })),
          h("td", {}, h("div", { class: "actions" },
            h("button", { type: "button", class: "secondary outline", "data-action": "test", "data-id": c.id, "aria-label": `Test channel ${c.name}` }, "Test"),
            h("button", { type: "button", class: "secondary outline", "data-action": "toggle", "data-id": c.id }, c.enabled ? "Disable" : "Enable"),
            h("button", { type: "button", "data-action": "edit", "data-id": c.id }, "Edit"))));
      }, "No channels yet. Add one below to start serving requests.");
    }

    tbody.addEventListener("click", (event) => {
      const btn = event.target.closest("button[data-action]");
      if (!btn) return;
      const channel = byId[btn.dataset.id];
      if (btn.dataset.action === "edit") return editMode(channel);
      if (btn.dataset.action === "test") return testChannel(btn, channel);
      act(main, btn, async () => {
        await MG.api("PATCH", `/api/admin/channels/${channel.id}`, { enabled: !channel.enabled });
        MG.toast(`Channel ${channel.name} ${channel.enabled ? "disabled" : "enabled"}.`);
        await load();
      });
    });
    // one tiny unbilled request through the channel; the answer says ok or why not (never the upstream body)
    function testChannel(btn, channel) {
      const out = MG.$(tbody, `[data-test-result="${channel.id}"]`);
      out.textContent = "testing…";
      act(main, btn, async () => {
        try {
          const r = await MG.api("POST", `/api/admin/channels/${channel.id}/test`, {});
          out.textContent = r.ok ? `ok · ${MG.int(r.latency_ms)} ms` : `failed: ${(r.error && r.error.message) || "no answer"}`;
        } catch (err) {
          out.textContent = "";
          throw err;
        }
      });
    }

    cancel.addEventListener("click", () => editMode(null));
    MG.onSubmit(form, async (v) => {
      const body = {
        base_url: v.base_url,
        models: v.models.split(",").map((s) => s.trim()).filter(Boolean),
        priority: Number(v.priority || 0),
        weight: Number(v.weight || 1),
      };
      if (v.api_key) body.api_key = form.elements.api_key.value;
      if (v.id) {
        await MG.api("PATCH", `/api/admin/channels/${v.id}`, { ...body, enabled: v.enabled });
      } else {
        const created = await MG.api("POST", "/api/admin/channels", { ...body, name: v.name, provider: v.provider });
        if (!v.enabled) await MG.api("PATCH", `/api/admin/channels/${created.id}`, { enabled: false });
      }
      MG.toast(v.id ? `Channel ${v.name} saved.` : `Channel ${v.name} added.`);
      editMode(null);
      await load();
    });
    await load();
  };

  /* ---------- prices ---------- */

  const perMillion = (usd) => (usd === undefined || usd === null ? "—" : `$${usd}`);

  const fees = (p) => [Number(p.request) > 0 ? `$${Number(p.request)}/request` : "", Number(p.image) > 0 ? `$${Number(p.image)}/image` : ""].filter(Boolean).join(", ") || "—";
  const tokens = (n) => (n === null || n === undefined ? "catalogue" : Number(n).toLocaleString("en-US"));

  MG.pages["admin-prices"] = async function (main) {
    const tbody = MG.$(main, "[data-prices]");
    const form = MG.$(main, "#price-form");
    const paid = MG.$$(form, "[data-paid] input");
    const byModel = {};
    function showFree() {
      const free = form.elements.free.checked;
      for (const el of paid) {
        el.disabled = free;
        if (el.name === "input" || el.name === "output") el.required = !free;
      }
    }
    form.elements.free.addEventListener("change", showFree);
    async function load() {
      const prices = list(await MG.api("GET", "/api/admin/prices"), "prices");
      MG.fillRows(tbody, prices, (p) => {
        byModel[p.model] = p;
        const money = p.free
          ? [h("td", { class: "num", colspan: "5" }, "free")]
          : [
              h("td", { class: "num" }, perMillion(p.input)),
              h("td", { class: "num" }, perMillion(p.cached_input)),
              h("td", { class: "num" }, perMillion(p.cache_write)),
              h("td", { class: "num" }, perMillion(p.output)),
              h("td", { class: "num" }, fees(p)),
            ];
        return h("tr", {},
          h("td", {}, p.model),
          ...money,
          h("td", { class: "num" }, `${tokens(p.max_output_tokens)} / ${tokens(p.context_length)}`),
          h("td", {}, MG.date(p.updated_at)),
          h("td", {}, h("div", { class: "actions" }, h("button", { type: "button", class: "secondary outline", "data-action": "edit", "data-model": p.model }, "Edit"))));
      }, "No prices set yet.");
    }
    tbody.addEventListener("click", (event) => {
      const btn = event.target.closest("button[data-action=edit]");
      if (!btn) return;
      const p = byModel[btn.dataset.model];
      form.elements.model.value = p.model;
      form.elements.free.checked = p.free;
      for (const name of ["input", "cached_input", "cache_write", "output", "request", "image"]) {
        form.elements[name].value = p.free ? "" : p[name];
      }
      form.elements.max_output_tokens.value = p.max_output_tokens ?? "";
      form.elements.context_length.value = p.context_length ?? "";
      showFree();
      form.elements.input.focus();
    });
    const orNull = (text) => (text ? text : null);
    const intOrNull = (text) => (text ? Number(text) : null);
    MG.onSubmit(form, async (v) => {
      const terms = v.free
        ? { free: true }
        : {
            input: v.input, output: v.output, cached_input: orNull(v.cached_input), cache_write: orNull(v.cache_write),
            request: orNull(v.request), image: orNull(v.image),
          };
      terms.max_output_tokens = intOrNull(v.max_output_tokens);
      terms.context_length = intOrNull(v.context_length);
      await MG.api("PUT", `/api/admin/prices/${encodeURIComponent(v.model)}`, terms);
      MG.toast(`Price for ${v.model} saved.`);
      form.reset();
      showFree();
      await load();
    });
    await load();
  };

  /* ---------- usage across users ---------- */

  MG.pages["admin-usage"] = async function (main) {
    const form = MG.$(main, "#usage-filters");
    const tbody = MG.$(main, "[data-rows]");
    const errorBox = MG.$(main, "[data-form-error]");
    MG.fillFilters(form);
    const pager = MG.pager(main, (page) => load(page));
    async function load(page) {
      errorBox.hidden = true;
      const filters = MG.filterParams(form);
      history.replaceState(null, "", "/admin/usage" + MG.query(filters));
      MG.loadingRow(tbody, "Loading usage…");
      try {
        const data = await MG.api("GET", "/api/admin/usage" + MG.query({ ...filters, page, page_size: 50 }));
        MG.fillRows(tbody, data.items, (r) => h("tr", {},
          h("td", {}, MG.time(r.created_at)),
          h("td", {}, r.username || `#${r.user_id}`),
          h("td", {}, r.model),
          h("td", {}, r.channel_name || (r.channel_id ? `#${r.channel_id}` : "—")),
          h("td", { class: "num" }, `${MG.int(r.prompt_tokens)} / ${MG.int(r.completion_tokens)}`),
          h("td", { class: "num" }, MG.usd(r.cost_micros)),
          h("td", {}, MG.statusBadge(r.status_code)),
          h("td", { class: "num" }, `${MG.int(r.latency_ms)} ms`)), "No requests match.");
        pager.update(data);
      } catch (err) {
        MG.fillRows(tbody, [], null, "Could not load usage.");
        MG.showError(errorBox, err);
      }
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); load(1); });
    await load(1);
  };

  /* ---------- tickets ---------- */

  MG.pages["admin-tickets"] = async function (main) {
    const tickets = list(await MG.api("GET", "/api/admin/tickets"), "tickets");
    const order = { open: 0, answered: 1, closed: 2 };
    tickets.sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3));
    MG.fillRows(MG.$(main, "[data-tickets]"), tickets, (t) => h("tr", {},
      h("td", {}, `#${t.id}`),
      h("td", { class: "wrap" }, h("a", { href: `/admin/tickets/${t.id}` }, t.subject)),
      h("td", {}, t.username || (t.user_id ? `#${t.user_id}` : "—")),
      h("td", {}, MG.ticketBadge(t.status)),
      h("td", {}, MG.time(t.updated_at || t.created_at))), "No tickets. All quiet.");
  };

  MG.pages["admin-ticket"] = async function (main) {
    const id = main.dataset.ticketId;
    const load = async () => MG.renderThread(main, await MG.api("GET", `/api/admin/tickets/${id}`));
    const form = MG.$(main, "#reply-form");
    MG.onSubmit(form, async (v) => {
      await MG.api("POST", `/api/admin/tickets/${id}/messages`, { body: v.body });
      form.reset();
      MG.toast("Reply sent; the customer is emailed.");
      await load();
    });
    await load();
  };

  /* ---------- policy versions ---------- */

  MG.pages["admin-policies"] = async function (main) {
    const tbody = MG.$(main, "[data-policies]");
    const form = MG.$(main, "#policy-form");
    async function load() {
      const versions = list(await MG.api("GET", "/api/admin/policies"), "versions");
      MG.fillRows(tbody, versions, (v) => h("tr", {},
        h("td", {}, v.version),
        h("td", {}, v.effective_date),
        h("td", {}, MG.time(v.published_at)),
        h("td", {}, v.mailing_complete ? MG.badge("complete", "ok") : MG.badge("in progress", "warn"), ` ${MG.int(v.mailed_users)} users emailed`)), "No versions.");
    }
    MG.onSubmit(form, async (v) => {
      if (!window.confirm(`Publish version ${v.version}? Every active user is emailed once and asked to accept it.`)) return;
      const done = await MG.api("POST", "/api/admin/policies", { version: v.version, effective_date: v.effective_date, text: form.elements.text.value });
      MG.toast(`Version ${done.version} published; ${MG.int(done.mailed_users)} users are being emailed.`);
      form.reset();
      await load();
    });
    await load();
  };
})();
