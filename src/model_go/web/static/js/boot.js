/* boot.js: runs a page's module when its <main data-page> arrives (first load or htmx-boosted nav). */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;

  function renderChrome(me) {
    for (const el of document.querySelectorAll("[data-me-name]")) {
      el.textContent = "Signed in as " + (me.username || me.email || "you");
    }
    for (const el of document.querySelectorAll("[data-admin-only]")) el.hidden = !MG.isAdmin(me);
    renderPolicyBanner(me);
    MG.lowBalanceBanner();
  }

  // A reminder while the balance is below the user's low-balance threshold (GET /api/billing/low-balance).
  MG.lowBalanceBanner = async function () {
    const box = document.getElementById("reminders");
    if (!box) return;
    let data = null;
    try {
      data = await MG.api("GET", "/api/billing/low-balance");
    } catch (err) {
      return; // a reminder is no reason to interrupt the page
    }
    box.replaceChildren();
    if (!data.below) return;
    box.append(
      h("article", { class: "banner alert info", role: "region", "aria-label": "Low balance", "data-low-balance": "" },
        h("p", {}, h("strong", {}, "Your balance is low. "),
          `It is ${MG.usd(data.balance_micros)}, below your reminder at ${MG.usd(data.low_balance_micros)}. `,
          "Requests are refused once it runs out. ",
          location.pathname === "/billing" ? null : h("a", { href: "/billing" }, "Add credit"))));
  };

  // When a new policy version is published the user is asked to accept it at their next visit.
  async function renderPolicyBanner(me) {
    const box = document.getElementById("banners");
    if (!box) return;
    box.replaceChildren();
    if (!me.policy_update_required) return;
    let current = null;
    try {
      current = (await MG.api("GET", "/api/policy")).current;
    } catch (err) {
      MG.toast(err.message, "error");
      return;
    }
    const error = h("div", { class: "alert error", role: "alert", hidden: true });
    const accept = h("button", { type: "button" }, `Accept version ${current.version}`);
    accept.addEventListener("click", async () => {
      MG.busy(accept, true);
      try {
        await MG.api("POST", "/api/policy/accept", { version: current.version });
        MG.me.policy_update_required = false;
        MG.me.policy_version_accepted = current.version;
        box.replaceChildren();
        MG.toast("Thank you: you accepted the privacy policy version " + current.version + ".");
        document.dispatchEvent(new CustomEvent("mg:policy-accepted"));
      } catch (err) {
        MG.showError(error, err);
      } finally {
        MG.busy(accept, false);
      }
    });
    box.append(
      h("article", { class: "banner alert info", role: "region", "aria-label": "Privacy policy update" },
        h("p", {}, h("strong", {}, me.policy_version_accepted ? "Our privacy policy has changed. " : "Please accept our privacy policy. "),
          `Version ${current.version} takes effect on ${current.effective_date}. Please read it and accept it to keep using your account. `,
          "If you do not agree, you can close your account from the Privacy page."),
        error,
        h("div", { class: "actions-left" },
          location.pathname === "/privacy" ? null : h("a", { href: "/privacy#policy", role: "button", class: "secondary outline" }, "Read the policy"),
          " ", accept)));
  }

  async function logout(button) {
    MG.busy(button, true);
    MG.loggingOut = true;
    try {
      await MG.api("POST", "/api/auth/logout");
    } catch (err) {
      if (err.status !== 401) { MG.loggingOut = false; MG.toast(err.message, "error"); MG.busy(button, false); return; }
    }
    location.assign("/login?logged_out=1");
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action=logout]");
    if (target) logout(target);
  });

  function denied(main) {
    main.querySelector(".page-title").after(
      h("div", { class: "alert error", role: "alert" }, "This page is for administrators only."));
    for (const el of main.querySelectorAll("form, .table-wrap, article, nav.pager")) el.hidden = true;
  }

  async function boot(root) {
    const main = root.matches && root.matches("main[data-page]") ? root : root.querySelector && root.querySelector("main[data-page]");
    if (!main || main.dataset.booted) return;
    main.dataset.booted = "1";
    const access = main.dataset.access || "public";
    try {
      let me = null;
      if (access !== "public") {
        me = await MG.loadMe();
        if (!me) return;
        renderChrome(me);
        if (access === "admin" && !MG.isAdmin(me)) return denied(main);
      }
      const page = MG.pages[main.dataset.page];
      if (page) await page(main, me);
    } catch (err) {
      MG.toast(err.message, "error");
      const box = main.querySelector("[data-form-error], [data-list-error]");
      if (box) MG.showError(box, err);
    }
  }

  if (window.htmx) window.htmx.onLoad(boot);
  else if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => boot(document.body));
  else boot(document.body);
})();
