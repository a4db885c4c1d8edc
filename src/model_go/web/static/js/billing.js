/* billing.js: the billing page (card top-up, redeem a code, receipts, ledger) and the admin codes page. */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;

  const KIND_LABELS = {
    topup: "Card top-up", usage: "Charge", adjustment: "Adjustment", refund: "Refund", redemption: "Code",
    dispute: "Dispute", credit: "Top-up", debit: "Charge", adjust: "Adjustment",
  };
  const STATUS = { paid: ["paid", "ok"], pending: ["pending", "warn"], mismatch: ["held for review", "bad"], failed: ["failed", "bad"] };

  function ledgerRow(e) {
    return h("tr", {},
      h("td", {}, MG.time(e.created_at)),
      h("td", {}, KIND_LABELS[e.kind] || e.kind),
      h("td", { class: "wrap" }, e.note || (e.request_id ? `Request ${e.request_id}` : "—")),
      h("td", { class: "num amount " + (e.amount_micros < 0 ? "neg" : "pos") }, (e.amount_micros > 0 ? "+" : "") + MG.usd(e.amount_micros)));
  }

  function topupRow(t) {
    const [label, kind] = STATUS[t.status] || [t.status, ""];
    const refunded = t.refunded_usd && Number(t.refunded_usd) > 0 ? ` (refunded $${Number(t.refunded_usd).toFixed(2)})` : "";
    return h("tr", {},
      h("td", {}, MG.time(t.created_at)),
      h("td", {}, MG.badge(label + refunded, kind)),
      h("td", { class: "wrap" }, h("code", {}, t.stripe_reference || "—")),
      h("td", { class: "num" }, MG.usd(t.amount_micros)));
  }

  // Coming back from Stripe: say what happened (the credit itself arrives by webhook, within seconds).
  function showReturn(main) {
    const outcome = new URLSearchParams(location.search).get("topup");
    if (!outcome) return;
    const box = MG.$(main, "[data-topup-result]");
    box.textContent = outcome === "success"
      ? "Thank you: your payment is being confirmed. The credit appears here within a few seconds."
      : "The payment was cancelled; nothing was charged.";
    box.hidden = false;
  }

  function showLowBalance(form, data) {
    form.elements.low_balance_usd.value = data.source === "user" ? String(Number(data.low_balance_micros) / 1e6) : "";
    form.elements.low_balance_usd.placeholder = data.source === "default" ? String(Number(data.low_balance_micros) / 1e6) : "";
    MG.$(form.closest("article"), "[data-low-help]").dataset.below = data.below ? "1" : "";
  }

  async function lowBalance(main) {
    const form = MG.$(main, "#low-balance-form");
    MG.onSubmit(form, async (v) => {
      const data = await MG.api("PUT", "/api/billing/low-balance", { low_balance_usd: v.low_balance_usd || null });
      showLowBalance(form, data);
      MG.toast(data.low_balance_micros > 0 ? `Reminder set: below ${MG.usd(data.low_balance_micros)}.` : "Low-balance mails are off.");
      MG.lowBalanceBanner();
    });
    try {
      showLowBalance(form, await MG.api("GET", "/api/billing/low-balance"));
    } catch (err) {
      MG.formError(form, err);
    }
  }

  MG.pages.billing = async function (main) {
    lowBalance(main);
    const tbody = MG.$(main, "[data-rows]");
    const topups = MG.$(main, "[data-topups]");
    const errorBox = MG.$(main, "[data-form-error]");
    const topupForm = MG.$(main, "#topup-form");
    const pager = MG.pager(main, (page) => load(page));
    showReturn(main);

    async function load(page) {
      MG.loadingRow(tbody, "Loading the ledger…");
      try {
        const data = await MG.api("GET", "/api/billing" + MG.query({ page, page_size: 50 }));
        const stat = MG.$(main, "[data-stat=balance]");
        stat.removeAttribute("aria-busy");
        stat.textContent = MG.usd(data.balance_micros);
        const ledger = data.ledger || { items: [] };
        MG.fillRows(tbody, ledger.items, ledgerRow, "No credits or charges yet.");
        pager.update(ledger);
      } catch (err) {
        MG.fillRows(tbody, [], null, "Could not load the ledger.");
        MG.showError(errorBox, err);
      }
    }

    async function loadTopups() {
      try {
        const data = await MG.api("GET", "/api/billing/topups");
        MG.$(main, "[data-topup]").hidden = !data.card_payments;
        MG.$(main, "[data-no-cards]").hidden = data.card_payments;
        const min = Number(data.min_usd), max = Number(data.max_usd);
        MG.$(main, "[data-topup-help]").textContent =
          `Between $${min.toFixed(2)} and $${max.toFixed(2)}. You pay on Stripe's page; model-go never sees your card.`;
        topupForm.dataset.min = String(min);
        topupForm.dataset.max = String(max);
        MG.fillRows(topups, data.items, topupRow, "No card top-ups yet.");
      } catch (err) {
        MG.fillRows(topups, [], null, "Could not load top-ups.");
        MG.showError(errorBox, err);
      }
    }

    MG.onSubmit(topupForm, async (v) => {
      const session = await MG.api("POST", "/api/billing/checkout", { amount_usd: v.amount_usd });
      location.assign(session.url);
    });
    const redeemForm = MG.$(main, "#redeem-form");
    MG.onSubmit(redeemForm, async (v) => {
      const result = await MG.api("POST", "/api/redeem", { code: v.code });
      redeemForm.reset();
      MG.toast(`Code redeemed: ${MG.usd(Math.round(Number(result.amount_usd) * 1e6))} added.`);
      await load(1);
    });
    await Promise.all([load(1), loadTopups()]);
  };

  /* ---------- admin: redemption codes ---------- */

  MG.pages["admin-codes"] = async function (main) {
    const form = MG.$(main, "#codes-form");
    const tbody = MG.$(main, "[data-batches]");
    const listError = MG.$(main, "[data-list-error]");

    async function load() {
      MG.loadingRow(tbody);
      const batches = await MG.api("GET", "/api/admin/codes");
      MG.fillRows(tbody, batches, (b) => h("tr", {},
        h("td", {}, b.id),
        h("td", { class: "num" }, MG.usd(b.amount_micros)),
        h("td", { class: "num" }, MG.int(b.codes)),
        h("td", { class: "num" }, `${MG.int(b.used)} / ${MG.int(b.uses)}`),
        h("td", {}, b.expires_at ? MG.time(b.expires_at) : "never"),
        h("td", { class: "wrap" }, b.note || ""),
        h("td", {}, b.disabled ? MG.badge("disabled", "bad")
          : h("button", { type: "button", class: "secondary outline", "data-action": "disable", "data-id": b.id }, "Disable"))),
      "No code batches yet.");
    }

    MG.onSubmit(form, async (v) => {
      const body = { amount_usd: v.amount_usd, count: Number(v.count), uses: Number(v.uses), note: v.note || null };
      if (v.expires_at) body.expires_at = new Date(v.expires_at).toISOString();
      const batch = await MG.api("POST", "/api/admin/codes", body);
      MG.$(main, "[data-codes-text]").textContent = batch.codes.join("\n");
      MG.$(main, "[data-new-codes]").hidden = false;
      form.reset();
      await load();
    });
    tbody.addEventListener("click", async (event) => {
      const btn = event.target.closest("button[data-action=disable]");
      if (!btn || !window.confirm("Disable every code of this batch?")) return;
      MG.busy(btn, true);
      try {
        await MG.api("POST", `/api/admin/codes/${btn.dataset.id}/disable`);
        await load();
      } catch (err) {
        MG.showError(listError, err);
        if (btn.isConnected) MG.busy(btn, false);
      }
    });
    await load().catch((err) => MG.showError(listError, err));
  };
})();
