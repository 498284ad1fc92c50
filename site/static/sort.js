// Sortable tables: click a column header of a table.sortable to reorder its rows.
// Cells carry their raw value in data-value; numbers sort numerically, empty values always sort last.
(function () {
  "use strict";

  function key(row, col) {
    var cell = row.cells[col];
    var raw = cell ? cell.getAttribute("data-value") : "";
    if (raw === null) raw = cell.textContent.trim();
    if (raw === "") return { empty: true };
    var num = Number(raw);
    return isNaN(num) ? { text: raw.toLowerCase() } : { num: num };
  }

  function compare(a, b) {
    if (a.empty || b.empty) return (a.empty ? 1 : 0) - (b.empty ? 1 : 0);
    if ("num" in a && "num" in b) return a.num - b.num;
    if ("num" in a) return -1;
    if ("num" in b) return 1;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function sortBy(table, th, col) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, key: key(row, col), i: i };
    });
    rows.sort(function (a, b) {
      var empty = (a.key.empty ? 1 : 0) - (b.key.empty ? 1 : 0);
      if (empty !== 0) return empty;
      var c = compare(a.key, b.key);
      return (ascending ? c : -c) || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });
})();
