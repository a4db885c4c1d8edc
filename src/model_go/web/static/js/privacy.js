/* privacy.js: the Privacy page: policy and history, export, consent, withdrawal and account deletion. */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;

  async function policySection(main, me) {
    const data = await MG.renderPolicy(main);
    if (!data) return;
    const accepted = MG.$(main, "[data-policy-accepted]");
    accepted.textContent = me.policy_version_accepted ? `You accepted version ${me.policy_version_accepted}.` : "";
    const versions = data.versions && data.versions.length ? data.versions : [data.current];
    MG.fillRows(MG.$(main, "[data-policy-versions]"), versions, (v) => h("tr", {},
      h("td", {}, v.version),
      h("td", {}, v.effective_date),
      h("td", {}, MG.date(v.published_at)),
      h("td", {},
        v.version === data.current.version ? MG.badge("current", "ok") : MG.badge("superseded"),
        v.version === me.policy_version_accepted ? " " : null,
        v.version === me.policy_version_accepted ? MG.badge("accepted by you", "warn") : null)), "No versions published.");
  }

  function marketing(main, me) {
    const form = MG.$(main, "#marketing-form");
    const toggle = form.elements.marketing_emails;
    const status = MG.$(main, "[data-marketing-status]");
    toggle.checked = !!me.marketing_emails;
    toggle.addEventListener("change", async () => {
      MG.clearFormError(form);
      toggle.disabled = true;
      try {
        await MG.api("POST", "/api/me/consent", { marketing_emails: toggle.checked });
        status.textContent = toggle.checked ? " Saved: you will receive product news." : " Saved: no more product news.";
      } catch (err) {
        toggle.checked = !toggle.checked;
        MG.formError(form, err);
      } finally {
        toggle.disabled = false;
      }
    });
  }

  // Deleting the account and withdrawing consent to the policy both close it: password, then confirm.
  function closingForm(main, selector, method, path, question) {
    const form = MG.$(main, selector);
    form.elements.username.value = MG.me.username || "";
    MG.onSubmit(form, async () => {
      if (!window.confirm(question)) return;
      await MG.api(method, path, { password: form.elements.password.value });
      MG.setCsrf(null);
      location.assign("/goodbye");
    });
  }

  MG.pages.privacy = async function (main, me) {
    marketing(main, me);
    closingForm(main, "#withdraw-form", "POST", "/api/me/withdraw-policy-consent",
      "Withdraw your consent to the privacy policy? Your account closes now and your personal data is erased.");
    closingForm(main, "#delete-form", "DELETE", "/api/me",
      "Delete your account now? Your keys stop working, you are signed out everywhere, and your personal data is erased. This cannot be undone.");
    document.addEventListener("mg:policy-accepted", () => policySection(main, MG.me), { once: true });
    await policySection(main, me);
  };
})();
