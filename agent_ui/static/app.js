// The pages' small amount of plain JavaScript: the CSRF header on every htmx request, running
// timers, the category picker, placement alternatives, standard answers, the intake checklist,
// keyboard shortcuts and the live connection light. No framework, no build step.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  document.body.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf.content;
  });
  var $ = function (sel) { return document.querySelector(sel); };

  function two(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    document.querySelectorAll(".timer[data-from]").forEach(function (el) {
      var from = Date.parse(el.dataset.from);
      if (isNaN(from)) return;
      var secs = Math.max(0, Math.floor((Date.now() - from) / 1000));
      if (el.dataset.countdown) secs = Math.max(0, parseInt(el.dataset.countdown, 10) - secs);
      el.textContent = two(Math.floor(secs / 60)) + ":" + two(secs % 60);
    });
  }
  setInterval(tick, 1000); tick();

  function saveDraft() {
    htmx.trigger(document.body, "save");
  }
  function refreshPlace() {
    var address = $("#address_text");
    if (address) htmx.trigger(address, "refresh");
  }
  function checklist() {
    document.querySelectorAll("#five li").forEach(function (li) {
      var field = document.getElementById(li.dataset.need);
      li.classList.toggle("done", !!(field && field.value.trim()));
    });
    var d = $("#description"), c = $("#desc-count");
    if (d && c) c.textContent = d.value.length + " 字";
  }
  document.body.addEventListener("input", checklist);
  document.body.addEventListener("htmx:afterSwap", checklist);
  checklist();

  document.body.addEventListener("click", function (e) {
    var option = e.target.closest(".cat-option");
    if (option) {
      $("#category_key").value = option.dataset.key;
      $("#category_label").value = option.dataset.label;
      $("#category-chosen").textContent = option.dataset.label;
      $("#category-options").innerHTML = "";
      checklist(); refreshPlace(); saveDraft();
      return;
    }
    var alt = e.target.closest(".alt");
    if (alt) {
      $("#district_code").value = alt.dataset.district;
      $("#place_confirmed").value = alt.dataset.district ? "1" : "";
      refreshPlace(); saveDraft();
      return;
    }
    var kb = e.target.closest(".kb-use");
    if (kb) {
      $("#answer").value = kb.dataset.answer;
      $("#answer-text").textContent = kb.dataset.answer;
      $("#answer-box").hidden = false;
      $("#request_type").value = "咨询";
      var d = $("#description");
      if (d && !d.value.trim()) d.value = "咨询：" + kb.dataset.question;
      if (kb.dataset.category && !$("#category_key").value) $("#category_key").value = kb.dataset.category;
      checklist(); saveDraft();
      return;
    }
    if (e.target.id === "btn-clear-answer") {
      $("#answer").value = ""; $("#answer-box").hidden = true; saveDraft();
    }
  });

  // Enter in a field of the new-case form does not send it: only the submit button (or Ctrl+Enter) does
  document.body.addEventListener("submit", function (e) { if (e.target.id === "case-form") e.preventDefault(); });

  var keys = { r: "#btn-ready", p: "#btn-pause", w: "#btn-end-wrapup", n: "#btn-new-case", t: "#btn-transfer" };
  var focus = { a: "#address_text", c: "#category_q", k: "#kb-q" };
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey && e.key === "Enter") { var s = $("#btn-submit"); if (s) { e.preventDefault(); s.click(); } return; }
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    var k = e.key.toLowerCase();
    if (keys[k]) { var b = $(keys[k]); if (b && !b.disabled) { e.preventDefault(); b.click(); } }
    else if (focus[k]) { var f = $(focus[k]); if (f) { e.preventDefault(); f.focus(); } }
  });

  var light = $("#live-status");
  document.body.addEventListener("htmx:wsOpen", function () { if (light) { light.className = "live on"; light.title = "实时连接正常"; } });
  document.body.addEventListener("htmx:wsClose", function () { if (light) { light.className = "live off"; light.title = "实时连接中断，正在重连"; } });
})();
