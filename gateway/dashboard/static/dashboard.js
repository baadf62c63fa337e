// Telepath dashboard: small progressive enhancements. Every page works without this
// file; with it, forms show only the chosen provider's fields, credentials can be
// generated and copied in place, deletions confirm in a <dialog>, and call logs refresh.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const announce = (text) => {
    const region = document.getElementById("live-region");
    if (region) { region.textContent = ""; window.setTimeout(() => { region.textContent = text; }, 30); }
  };

  // Provider dropdown: show (and submit) only the chosen provider's fieldset.
  function syncProviders(select) {
    const form = select.form;
    form.querySelectorAll("fieldset.provider").forEach((set) => {
      const on = set.dataset.provider === select.value;
      set.hidden = !on;
      set.disabled = !on;
    });
  }
  document.querySelectorAll("select[data-provider-select]").forEach((select) => {
    syncProviders(select);
    select.addEventListener("change", () => syncProviders(select));
  });

  // "Show password" checkboxes.
  document.querySelectorAll("input[data-reveal]").forEach((box) => {
    const target = document.getElementById(box.dataset.reveal);
    const sync = () => { if (target) target.type = box.checked ? "text" : "password"; };
    sync();
    box.addEventListener("change", sync);
  });

  // Generate credentials in place (without JS the button re-renders the form, filled in).
  document.querySelectorAll("button[data-generate]").forEach((button) => {
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        const response = await fetch("/dashboard/credentials/generate", {
          method: "POST", credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" },
        });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const data = await response.json();
        const form = button.form;
        form.elements["sip_username"].value = data.sip_username;
        const password = form.elements["sip_password"];
        password.value = data.sip_password;
        password.type = "text";
        const reveal = form.querySelector('input[data-reveal="' + password.id + '"]');
        if (reveal) reveal.checked = true;
        announce("Generated a SIP username and password. The password is shown once more after you create the connection.");
      } catch (error) {
        announce("Could not generate credentials: " + error.message);
      } finally {
        button.disabled = false;
      }
    });
  });

  // Copy buttons.
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      if (!input) return;
      let copied = false;
      try {
        await navigator.clipboard.writeText(input.value);
        copied = true;
      } catch (error) {
        input.select();
        copied = document.execCommand && document.execCommand("copy");
      }
      const label = button.firstChild;
      label.textContent = copied ? "Copied" : "Press Ctrl+C";
      announce(copied ? "Copied to the clipboard." : "Selected: press Ctrl+C to copy.");
      window.setTimeout(() => { label.textContent = "Copy"; }, 2000);
    });
  });

  // Links that open a <dialog> (they lead to a confirm page without JS).
  document.querySelectorAll("a[data-dialog]").forEach((link) => {
    const dialog = document.getElementById(link.dataset.dialog);
    if (!dialog || typeof dialog.showModal !== "function") return;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      dialog.showModal();
      dialog.querySelector("[data-close]")?.focus();
    });
    dialog.querySelectorAll("[data-close]").forEach((close) =>
      close.addEventListener("click", () => { dialog.close(); link.focus(); }));
  });

  // Forms that ask first.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // Call logs: refresh the rows every few seconds while the page is visible.
  const rows = document.getElementById("call-rows");
  if (rows && rows.dataset.feed) {
    const toggle = document.getElementById("live-toggle");
    const status = document.getElementById("live-status");
    const total = document.getElementById("call-total");
    let live = true;
    let failures = 0;
    toggle.hidden = false;
    toggle.addEventListener("click", () => {
      live = !live;
      toggle.setAttribute("aria-pressed", String(live));
      toggle.textContent = live ? "Live updates on" : "Live updates paused";
    });
    const refresh = async () => {
      if (!live || document.hidden) return;
      try {
        const response = await fetch(rows.dataset.feed, { credentials: "same-origin", headers: { "Accept": "application/json" } });
        if (response.status === 401) { status.textContent = "Signed out: reload to sign in again."; live = false; return; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        const data = await response.json();
        rows.innerHTML = data.rows_html;  // rendered and escaped by the server's templates
        if (total) total.textContent = data.total;
        const shown = document.getElementById("call-shown");
        if (shown) shown.textContent = data.count;
        failures = 0;
        status.textContent = "Updated " + new Date().toLocaleTimeString();
      } catch (error) {
        failures += 1;
        status.textContent = "Could not refresh (" + error.message + "); retrying.";
      }
    };
    window.setInterval(refresh, 3000);
  }
})();
