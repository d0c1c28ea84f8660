// Keyboard use of the workbench, with no library. A page marks what keys do with data attributes:
//   data-key="m"        pressing m clicks this element (a button or a link)
//   data-row            rows a steward moves through with j / k (or ↓ / ↑); Enter opens the row's first link
// Keys are ignored while typing in a field (Escape leaves the field). "?" shows the page's key list.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-row]")); }
  function select(index) {
    var all = rows();
    if (!all.length) { return; }
    index = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (r, i) { r.classList.toggle("selected", i === index); });
    all[index].scrollIntoView({block: "nearest"});
  }
  function current() {
    var all = rows();
    for (var i = 0; i < all.length; i++) { if (all[i].classList.contains("selected")) { return i; } }
    return -1;
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (rows().length && current() < 0) { select(0); }
    var focus = document.querySelector("[data-autofocus]");
    if (focus) { focus.focus(); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var key = event.key;
    if (key === "j" || key === "ArrowDown") { select(current() + 1); event.preventDefault(); return; }
    if (key === "k" || key === "ArrowUp") { select(current() - 1); event.preventDefault(); return; }
    if (key === "Enter" && current() >= 0) {
      var link = rows()[current()].querySelector("a[href]");
      if (link) { link.click(); event.preventDefault(); }
      return;
    }
    if (key === "?") {
      var help = document.getElementById("keys");
      if (help) { help.hidden = !help.hidden; }
      return;
    }
    var target = key.length === 1 ? document.querySelector('[data-key="' + CSS.escape(key) + '"]') : null;
    if (target && key.length === 1) {
      event.preventDefault();
      if (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT") { target.focus(); }
      else { target.click(); }
    }
  });
})();
