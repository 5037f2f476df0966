// tierline merchant pages: the few actions that change data, through the JSON API (docs/ui.md).
// Embedded in Shopify admin, every call carries a fresh App Bridge session token
// (shopify.idToken()); in development, the token the page was rendered with.
"use strict";

(function () {
  function meta(name) {
    const element = document.querySelector(`meta[name="${name}"]`);
    return element ? element.getAttribute("content") : null;
  }

  // The tiers, highest first, as the server declares them (service/domain/tier_levels.py).
  const TIER_LEVELS = JSON.parse(meta("tierline-tiers") || "[]");
  const TIERS = TIER_LEVELS.map((level) => level.name);
  const TIER_NAMES = Object.fromEntries(TIER_LEVELS.map((level) => [level.name, level.label]));
  // The tiers that have a threshold: every tier but the lowest.
  const THRESHOLD_TIERS = TIERS.slice(0, -1);

  function embedded() {
    return Boolean(window.shopify && typeof window.shopify.idToken === "function");
  }

  async function sessionToken() {
    if (embedded()) return window.shopify.idToken();
    const dev = meta("tierline-dev-token");
    if (dev) return dev;
    throw new Error("no session: open tierline from your Shopify admin");
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${await sessionToken()}` };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = {};
    }
    if (response.status === 401) {
      data.detail = "Your session has expired: reload the page.";
    }
    return { ok: response.ok, status: response.status, data };
  }

  function setBusy(progress, button, busy) {
    if (progress) progress.hidden = !busy;
    if (button) button.disabled = busy;
  }

  // --- embedded navigation: links and GET forms carry a fresh id_token ------------------------

  function withToken(url, token) {
    const target = new URL(url, window.location.href);
    target.searchParams.set("id_token", token);
    return target.toString();
  }

  function keepSession() {
    if (!embedded()) return;
    document.addEventListener("click", async (event) => {
      const link = event.target.closest("a[href^='/app']");
      if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
      event.preventDefault();
      window.location.assign(withToken(link.getAttribute("href"), await window.shopify.idToken()));
    });
    document.addEventListener("submit", async (event) => {
      const form = event.target;
      if (form.getAttribute("method") !== "get") return;
      event.preventDefault();
      const target = new URL(form.getAttribute("action"), window.location.href);
      for (const [key, value] of new FormData(form)) {
        if (value !== "") target.searchParams.append(key, value);
      }
      window.location.assign(withToken(target.toString(), await window.shopify.idToken()));
    });
  }

  // A page loaded in the admin without a valid token: get one and load it again (once).
  function bounce() {
    const marker = document.getElementById("bounce");
    if (!marker || !embedded()) return;
    const last = Number(window.sessionStorage.getItem("tierline-bounce") || 0);
    if (Date.now() - last < 10000) {
      marker.textContent = "Signing in did not work. Reopen tierline from the Apps section of your admin.";
      return;
    }
    window.sessionStorage.setItem("tierline-bounce", String(Date.now()));
    window.shopify.idToken().then((token) => window.location.replace(withToken(window.location.href, token)));
  }

  // --- settings -------------------------------------------------------------------------------

  function clearErrors(form) {
    for (const slot of form.querySelectorAll("[data-error-for]")) {
      slot.hidden = true;
      slot.textContent = "";
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  function showError(form, field, message) {
    const parts = field.split(".");
    const candidates = [field, parts[0], ""];
    let slot = null;
    for (const name of candidates) {
      slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (slot) break;
    }
    if (!slot) return null;
    const detail = slot.getAttribute("data-error-for") === field ? message : `${field}: ${message}`;
    slot.textContent = slot.textContent ? `${slot.textContent} ${detail}` : detail;
    slot.hidden = false;
    const input = form.querySelector(`[data-field="${CSS.escape(slot.getAttribute("data-error-for"))}"]`);
    if (input) input.setAttribute("aria-invalid", "true");
    return input;
  }

  function readSettings(form) {
    const errors = [];
    const thresholds = {};
    for (const tier of THRESHOLD_TIERS) {
      thresholds[tier] = form.elements[tier].value.trim().replace(/,/g, "");
    }
    const gateways = form.elements.codGateways.value
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean);
    const tags = {};
    for (const line of form.elements.rtoTags.value.split("\n")) {
      if (!line.trim()) continue;
      const [tag, state, extra] = line.split("=").map((part) => part.trim());
      if (!tag || !state || extra !== undefined) {
        errors.push({ field: "rtoTags", message: `“${line.trim()}” is not “tag = state”.` });
      } else {
        tags[tag] = state;
      }
    }
    const settings = {
      tierThresholds: thresholds,
      codGateways: gateways,
      rtoTags: tags,
      includeTestOrders: form.elements.includeTestOrders.checked,
    };
    if (form.elements.writeBackEnabled) {
      settings.writeBack = {
        enabled: form.elements.writeBackEnabled.checked,
        customerTags: form.elements.writeBackCustomerTags.checked,
        orderRiskTag: form.elements.writeBackOrderRiskTag.checked,
        riskMinCodRto: Number(form.elements.writeBackRiskMinCodRto.value),
      };
    }
    return { settings, errors };
  }

  function tierCounts() {
    const counts = {};
    for (const row of document.querySelectorAll("#tier-counts tr[data-tier]")) {
      counts[row.dataset.tier] = Number(row.querySelector("[data-count]").dataset.count);
    }
    return counts;
  }

  function showTierCounts(counts) {
    for (const row of document.querySelectorAll("#tier-counts tr[data-tier]")) {
      const cell = row.querySelector("[data-count]");
      cell.dataset.count = String(counts[row.dataset.tier]);
      cell.textContent = Number(counts[row.dataset.tier]).toLocaleString("en");
    }
  }

  function settingsForm() {
    const form = document.getElementById("settings-form");
    if (!form) return;
    const progress = document.getElementById("save-progress");
    const message = document.getElementById("save-message");
    const button = document.getElementById("save-settings");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const { settings: body, errors } = readSettings(form);
      if (errors.length) {
        for (const error of errors) showError(form, error.field, error.message);
        message.textContent = "Not saved: fix the fields marked above.";
        return;
      }
      const before = tierCounts();
      setBusy(progress, button, true);
      message.textContent = "Saving settings and recalculating tiers…";
      try {
        const saved = await api("PUT", "/api/settings", body);
        if (!saved.ok) {
          let first = null;
          for (const error of saved.data.errors || []) {
            first = showError(form, error.field, error.message) || first;
          }
          message.textContent = saved.data.errors
            ? "Not saved: fix the fields marked above."
            : `Not saved: ${saved.data.detail || saved.status}`;
          if (first) first.focus();
          return;
        }
        for (const tier of THRESHOLD_TIERS) {
          form.elements[tier].value = saved.data.tierThresholds[tier];
        }
        const overview = await api("GET", "/api/reports/overview");
        if (!overview.ok) {
          message.textContent = "Saved. Tiers were recalculated.";
          return;
        }
        const after = overview.data.tiers;
        const moves = TIERS.filter((tier) => after[tier] !== before[tier]).map(
          (tier) => `${TIER_NAMES[tier]} ${before[tier]} → ${after[tier]}`,
        );
        showTierCounts(after);
        message.textContent =
          `Saved. Tiers recalculated for ${overview.data.customerCount} customers: ` +
          (moves.length ? `${moves.join(", ")}.` : "no tier changed.");
      } catch (error) {
        message.textContent = `Not saved: ${error.message}`;
      } finally {
        setBusy(progress, button, false);
      }
    });

    const useSuggestion = document.getElementById("use-suggestion");
    if (useSuggestion) {
      useSuggestion.addEventListener("click", () => {
        for (const cell of document.querySelectorAll("#suggestion-preview [data-suggested]")) {
          const tier = cell.closest("tr").dataset.tier;
          if (cell.dataset.suggested && form.elements[tier]) form.elements[tier].value = cell.dataset.suggested;
        }
        document.getElementById("suggestion-message").textContent =
          "The suggested thresholds are in the fields above. Save to apply them; nothing has changed yet.";
        form.elements[THRESHOLD_TIERS[0]].focus();
      });
    }

    const recalc = document.getElementById("recalculate");
    const recalcProgress = document.getElementById("recalc-progress");
    const recalcMessage = document.getElementById("recalc-message");
    recalc.addEventListener("click", async () => {
      setBusy(recalcProgress, recalc, true);
      recalcMessage.textContent = "Recalculating tiers of record…";
      try {
        const result = await api("POST", "/api/tiers/recalculate");
        if (!result.ok) {
          recalcMessage.textContent = `Failed: ${result.data.detail || result.status}`;
          return;
        }
        const changes = result.data.upgrades
          .slice(0, 5)
          .map((m) => `customer ${m.customerId}: ${m.from || "none"} → ${m.to}`);
        recalcMessage.textContent =
          `Done: ${result.data.updated} of ${result.data.total} customers changed tier of record` +
          (changes.length ? ` (${changes.join("; ")}).` : ".");
      } catch (error) {
        recalcMessage.textContent = `Failed: ${error.message}`;
      } finally {
        setBusy(recalcProgress, recalc, false);
      }
    });
  }

  // --- deliveries -----------------------------------------------------------------------------

  function writeBackReplay() {
    const button = document.getElementById("write-back-replay");
    if (!button) return;
    const status = document.getElementById("write-back-status");
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.textContent = "Queuing the failed write-backs again…";
      try {
        const result = await api("POST", "/api/shop/write-back/replay");
        if (!result.ok) {
          status.textContent = `Not queued: ${result.data.detail || result.status}`;
          button.disabled = false;
          return;
        }
        status.textContent =
          `${result.data.replayed} write-backs are back in the queue; reload the page in a minute to see what is left.`;
      } catch (error) {
        status.textContent = `Not queued: ${error.message}`;
        button.disabled = false;
      }
    });
  }

  function replayButtons() {
    const status = document.getElementById("replay-status");
    for (const button of document.querySelectorAll("button[data-replay]")) {
      button.addEventListener("click", async () => {
        const id = button.dataset.replay;
        const row = button.closest("tr");
        button.disabled = true;
        row.querySelector("[data-role=status]").textContent = "replaying…";
        try {
          const result = await api("POST", `/api/deliveries/${encodeURIComponent(id)}/replay`);
          if (!result.ok) {
            row.querySelector("[data-role=status]").textContent = "replay failed";
            status.textContent = `Delivery ${id} was not replayed: ${result.data.detail || result.status}`;
            button.disabled = false;
            return;
          }
          row.querySelector("[data-role=status]").textContent = result.data.status;
          row.querySelector("[data-role=attempts]").textContent = "not yet";
          row.querySelector("[data-role=error]").textContent = "—";
          // Replayed: nothing more to do here (a second replay would only queue it again).
          const done = document.createElement("span");
          done.className = "sub";
          done.textContent = "Queued again";
          button.replaceWith(done);
          status.textContent =
            `Delivery ${id} is back in the queue (${result.data.status}); reload the page in a few seconds to see whether it applied.`;
        } catch (error) {
          row.querySelector("[data-role=status]").textContent = "replay failed";
          status.textContent = `Delivery ${id} was not replayed: ${error.message}`;
          button.disabled = false;
        }
      });
    }
  }

  // --- connecting and syncing (the banner) ----------------------------------------------------

  // Approving scopes happens on Shopify's page, outside the admin's iframe: open tierline's
  // /auth/reconsent at the top level with a fresh session token; it sends the merchant on.
  function reconsentButtons() {
    for (const button of document.querySelectorAll("button[data-reconsent]")) {
      button.addEventListener("click", async () => {
        const token = embedded() ? await window.shopify.idToken() : button.dataset.token;
        const target = new URL("/auth/reconsent", window.location.href);
        target.searchParams.set("shop", button.dataset.shop);
        target.searchParams.set("id_token", token);
        window.open(target.toString(), "_top");
      });
    }
  }

  function showSync(banner, shop) {
    const sync = shop.sync;
    for (const key of ["customers", "orders"]) {
      const slot = banner.querySelector(`[data-sync=${key}]`);
      if (slot) slot.textContent = Number(sync[key]).toLocaleString();
    }
    const queued = banner.querySelector("[data-sync=queued]");
    if (queued) queued.textContent = sync.state === "queued" ? " (waiting to start)" : "";
    banner.dataset.syncState = sync.state;
    if (sync.state === "done") {
      banner.querySelector("p").textContent =
        `Done: ${Number(sync.customers).toLocaleString()} customers and ${Number(sync.orders).toLocaleString()} orders. `;
      const reload = document.createElement("a");
      reload.href = window.location.pathname + window.location.search;
      reload.textContent = "Reload to see every figure";
      banner.querySelector("p").append(reload);
    } else if (sync.state === "failed") {
      banner.querySelector("p").textContent = `The sync failed: ${sync.lastError || "unknown error"}. Reload to retry.`;
    }
  }

  // While a backfill or reconciliation runs, show its progress (GET /api/shop every 3 s).
  function followSync() {
    const banner = document.getElementById("sync-banner");
    if (!banner || !["queued", "running"].includes(banner.dataset.syncState)) return;
    const timer = window.setInterval(async () => {
      try {
        const result = await api("GET", "/api/shop");
        if (!result.ok) return;
        showSync(banner, result.data);
        if (!["queued", "running"].includes(result.data.sync.state)) window.clearInterval(timer);
      } catch (_) {
        // the next tick tries again
      }
    }, 3000);
  }

  function syncRetry() {
    const button = document.querySelector("button[data-sync-retry]");
    if (!button) return;
    const status = document.getElementById("sync-retry-status");
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.textContent = "Queuing…";
      const result = await api("POST", "/api/shop/sync");
      if (!result.ok) {
        status.textContent = `Not queued: ${result.data.detail || result.status}`;
        button.disabled = false;
        return;
      }
      const banner = document.getElementById("sync-banner");
      banner.dataset.syncState = result.data.sync.state;
      status.textContent = `Queued (${result.data.sync.state}). This page follows its progress.`;
      followSync();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bounce();
    keepSession();
    settingsForm();
    replayButtons();
    writeBackReplay();
    reconsentButtons();
    followSync();
    syncRetry();
  });
})();
