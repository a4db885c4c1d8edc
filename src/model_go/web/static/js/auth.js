/* auth.js: sign up, verify, log in, forgot and reset password, and the public policy page. */
(function () {
  "use strict";
  const MG = window.MG;
  const h = MG.h;
  const params = () => new URLSearchParams(location.search);

  MG.pages.signup = async function (main) {
    const form = MG.$(main, "#signup-form");
    let policy = null;
    try {
      policy = (await MG.api("GET", "/api/policy")).current;
      MG.$(main, "[data-policy-version]").textContent = ` (version ${policy.version}, effective ${policy.effective_date})`;
    } catch (err) {
      MG.formError(form, err);
    }
    MG.onSubmit(form, async (v) => {
      if (!policy) policy = (await MG.api("GET", "/api/policy")).current;
      await MG.api("POST", "/api/auth/register", {
        email: v.email,
        username: v.username,
        password: form.elements.password.value, // not trimmed: spaces are part of a password
        age_confirmed: v.age_confirmed,
        accept_policy_version: v.accept_policy ? policy.version : null,
      });
      MG.$(main, "[data-signup-email]").textContent = v.email;
      form.hidden = true;
      MG.$(main, "#signup-done").hidden = false;
      MG.$(main, "#signup-done").focus();
    });
  };

  MG.pages.verify = async function (main) {
    const token = params().get("token");
    const pending = MG.$(main, "[data-verify-pending]");
    const fail = (message) => {
      pending.hidden = true;
      MG.showError(MG.$(main, "[data-form-error]"), { message });
    };
    if (!token) return fail("This link has no token. Open the link from the email exactly as it was sent.");
    // drop the token from the address bar and history once read
    history.replaceState(null, "", "/verify");
    try {
      const result = await MG.api("POST", "/api/auth/verify", { token });
      pending.hidden = true;
      const ok = MG.$(main, "[data-verify-ok]");
      ok.textContent = (result && result.message) || "Your email address is verified.";
      ok.hidden = false;
      MG.$(main, "[data-verify-next]").hidden = false;
    } catch (err) {
      fail(err.message);
    }
  };

  MG.pages.login = async function (main) {
    const form = MG.$(main, "#login-form");
    const notice = MG.$(main, "[data-login-notice]");
    const p = params();
    const notices = {
      logged_out: "You are logged out.",
      password_changed: "Your password was changed and every session signed out. Log in with the new password.",
      session: "Please log in to continue.",
    };
    const key = p.has("logged_out") ? "logged_out" : p.get("reason") || (p.get("next") ? "session" : null);
    if (key && notices[key]) {
      notice.textContent = notices[key];
      notice.hidden = false;
    }
    MG.onSubmit(form, async (v) => {
      const data = await MG.api("POST", "/api/auth/login", { login: v.login, password: form.elements.password.value });
      MG.setCsrf(data.csrf_token);
      location.assign(MG.safeNext(p.get("next")));
    });
  };

  MG.pages.forgot = async function (main) {
    const form = MG.$(main, "#forgot-form");
    MG.onSubmit(form, async (v) => {
      await MG.api("POST", "/api/auth/password-reset", { email: v.email });
      form.hidden = true;
      MG.$(main, "[data-forgot-done]").hidden = false;
    });
  };

  MG.pages.reset = async function (main) {
    const form = MG.$(main, "#reset-form");
    const token = params().get("token");
    if (!token) {
      MG.formError(form, { message: "This link has no token. Ask for a new reset link." });
      form.querySelector("button").disabled = true;
      return;
    }
    history.replaceState(null, "", "/reset-password");
    MG.onSubmit(form, async () => {
      const password = form.elements.password.value;
      if (password !== form.elements.password_repeat.value) {
        throw { message: "The two passwords differ.", param: "password_repeat" };
      }
      await MG.api("POST", "/api/auth/password-reset/confirm", { token, password });
      form.hidden = true;
      MG.$(main, "[data-reset-done]").hidden = false;
    });
  };

  // The policy text, its meta line and (optionally) the version table: shared with the Privacy page.
  MG.renderPolicy = async function (main) {
    const meta = MG.$(main, "[data-policy-meta]");
    try {
      const data = await MG.api("GET", "/api/policy");
      const cur = data.current;
      meta.removeAttribute("aria-busy");
      meta.textContent = `Version ${cur.version} · effective ${cur.effective_date}`;
      MG.$(main, "[data-policy-text]").textContent = cur.text;
      return data;
    } catch (err) {
      meta.removeAttribute("aria-busy");
      meta.textContent = "";
      MG.showError(MG.$(main, "[data-form-error], [data-policy-error]"), err);
      return null;
    }
  };

  MG.pages.policy = async function (main) {
    const data = await MG.renderPolicy(main);
    const versions = ((data && data.versions) || []).filter((v) => v.version !== data.current.version);
    if (versions.length) {
      MG.$(main, "[data-policy-history]").hidden = false;
      MG.$(main, "[data-policy-versions]").replaceChildren(
        ...versions.map((v) => h("li", {}, `Version ${v.version}, effective ${v.effective_date}`)));
    }
  };
})();
