
"use strict";
(() => {
  const names = ["account", "owner", "result"];
  const selects = Object.fromEntries(names.map((n) => [n, document.getElementById("filter-" + n)]));
  const rows = Array.from(document.querySelectorAll("#keys tr.key"));
  const results = ["FAILED", "WARNING", "SUPPRESSED", "PASSED"];

  function apply() {
    const wanted = names.filter((n) => selects[n].value !== "");
    const shown = { keys: 0, FAILED: 0, WARNING: 0, SUPPRESSED: 0, PASSED: 0 };
    for (const row of rows) {
      const visible = wanted.every((n) => selects[n].value === "=" + row.dataset[n]);
      row.hidden = !visible;
      if (visible) {
        shown.keys += 1;
        shown[row.dataset.result] += 1;
      }
    }
    document.getElementById("shown-keys").textContent = shown.keys;
    for (const r of results) {
      document.getElementById("shown-" + r.toLowerCase()).textContent = shown[r];
    }
  }

  // `#result=FAILED&owner=team-a`: a filtered view can be linked to.
  function fromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const n of names) {
      const select = selects[n];
      if (!params.has(n)) {
        select.value = "";
        continue;
      }
      const value = "=" + params.get(n);
      if (!Array.from(select.options).some((o) => o.value === value)) {
        select.add(new Option(params.get(n) + " (none in this report)", value));
      }
      select.value = value;
    }
  }

  function toFragment() {
    const params = new URLSearchParams();
    for (const n of names) {
      if (selects[n].value !== "") params.set(n, selects[n].value.slice(1));
    }
    try {
      history.replaceState(null, "", "#" + params.toString());
    } catch (e) {
      // Some viewers of local files refuse it; the filters work regardless.
    }
  }

  for (const n of names) {
    selects[n].addEventListener("change", () => {
      toFragment();
      apply();
    });
  }
  window.addEventListener("hashchange", () => {
    fromFragment();
    apply();
  });
  fromFragment();
  apply();
  document.getElementById("filters").hidden = false;
  document.documentElement.dataset.js = "ready";
})();
