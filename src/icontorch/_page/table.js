(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("icon-data").textContent);
  var panel = document.getElementById("details");
  var tiles = Array.prototype.slice.call(document.querySelectorAll(".tile"));

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function copy(text, button) {
    function done(ok) { button.textContent = ok ? "copied" : "select and copy"; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      return;
    }
    var area = el("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    done(ok);
  }

  function neighbours(m) {
    return Object.keys(data).filter(function (n) {
      var o = data[n];
      return n !== m.name && o.kind === "figure" && m.kind === "figure" && (o.row === m.row || o.column === m.column);
    });
  }

  function show(name) {
    var m = data[name];
    if (!m) return;
    tiles.forEach(function (t) {
      t.classList.toggle("selected", t.dataset.name === name);
      t.classList.remove("related");
    });
    var near = neighbours(m);
    tiles.forEach(function (t) { if (near.indexOf(t.dataset.name) >= 0) t.classList.add("related"); });
    panel.textContent = "";
    panel.dataset.method = name;
    panel.appendChild(el("h2", {}, m.label + (m.gap ? " (new)" : "")));
    var area = el("span", {"class": "area"}, m.area_name);
    area.style.background = getComputedStyle(document.querySelector('.tile[data-name="' + name + '"]'))
      .getPropertyValue("--c");
    panel.appendChild(area);
    var rows = [
      ["function", "ic.methods." + m.name],
      ["cell", m.kind === "figure" ? "q: " + m.row + " / p: " + m.column : m.row + " / " + m.column + " (beside the table)"],
      ["p(j|i)", m.p], ["q(j|i)", m.q], ["divergence", m.divergence], ["theorem", m.theorem],
      ["equality", m.equality], ["original", m.cite || (m.gap ? "none: a gap of the table" : "-")],
      ["labels", m.labels ? "needs labels" : "unsupervised (no labels)"], ["proved by", m.test]
    ];
    if (m.note) rows.push(["note", m.note]);
    var dl = el("dl");
    rows.forEach(function (r) {
      dl.appendChild(el("dt", {}, r[0]));
      var dd = el("dd", {"data-field": r[0]});
      if (r[0] === "function" || r[0] === "proved by") dd.appendChild(el("code", {}, r[1])); else dd.textContent = r[1];
      dl.appendChild(dd);
    });
    panel.appendChild(dl);
    panel.appendChild(el("h3", {}, "Formula"));
    panel.appendChild(el("div", {"class": "formula"}, m.formula));
    panel.appendChild(el("h3", {}, "Code"));
    panel.appendChild(el("pre", {"class": "code"}, m.code));
    var button = el("button", {"class": "copy", "type": "button"}, "copy");
    button.addEventListener("click", function () { copy(m.code, button); });
    panel.appendChild(button);
    if (m.reference) {
      var ref = el("p", {"class": "links"});
      ref.appendChild(el("a", {"href": m.reference, "target": "_top"}, "API reference of ic.methods." + m.name));
      panel.appendChild(ref);
    }
    if (near.length) {
      var links = el("div", {"class": "links"}, "Same row or column: ");
      near.forEach(function (n, k) {
        var a = el("a", {"data-name": n, "tabindex": "0"}, data[n].label);
        a.addEventListener("click", function () { show(n); });
        if (k) links.appendChild(document.createTextNode(", "));
        links.appendChild(a);
      });
      panel.appendChild(links);
    }
    if (history.replaceState) history.replaceState(null, "", "#" + name);
  }

  function filter() {
    var areas = Array.prototype.slice.call(document.querySelectorAll('input[name="area"]:checked'))
      .map(function (i) { return i.value; });
    var mode = document.querySelector('input[name="labels"]:checked').value;
    tiles.forEach(function (t) {
      var on = areas.indexOf(t.dataset.area) >= 0 && (mode === "all" || t.dataset.labels === mode);
      t.classList.toggle("dim", !on);
    });
  }

  tiles.forEach(function (t) { t.addEventListener("click", function () { show(t.dataset.name); }); });
  document.querySelectorAll(".filters input").forEach(function (i) { i.addEventListener("change", filter); });
  var start = decodeURIComponent(location.hash.slice(1));
  if (data[start]) show(start);
}());
