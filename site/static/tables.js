// Leaderboard tables on DataTables (static/vendor/datatables): every table sorts; tables marked
// data-dt="full" also get a search box, drop-down filters on the columns listed in data-filters (exact
// match on each cell's data-search), a Columns button (data-hidden lists the columns hidden at first)
// and a CSV export of the rows as filtered. Cells carry their sort value in data-order.
(function () {
  "use strict";
  if (!window.DataTable) return;
  DataTable.ext.errMode = "throw"; // a problem is a console error (the browser test fails), never an alert

  function indices(table, name) {
    var raw = table.getAttribute(name);
    return raw ? raw.split(",").map(Number) : [];
  }

  // a cell as read: "81.5 ± 0.1", "propagations=1.44e+06" (the ± line and badges as separate words)
  function cellText(data, row, col, node) {
    return node ? node.innerText.replace(/\s+/g, " ").trim() : data;
  }

  function headerText(table, col) {
    var th = table.tHead.rows[0].cells[col];
    return th ? th.textContent.replace(/\s+/g, " ").trim() : "column " + col;
  }

  function addFilters(table, dt, columns) {
    if (!columns.length) return;
    var bar = document.createElement("div");
    bar.className = "filters";
    columns.forEach(function (col) {
      var values = [];
      dt.column(col).nodes().each(function (cell) {
        var v = cell.getAttribute("data-search");
        if (v !== null && values.indexOf(v) < 0) values.push(v);
      });
      values.sort();
      var label = document.createElement("label");
      var name = headerText(table, col);
      label.appendChild(document.createTextNode(name + " "));
      var select = document.createElement("select");
      select.setAttribute("data-column", String(col));
      select.setAttribute("aria-label", "filter by " + name);
      select.add(new Option("all", ""));
      values.forEach(function (v) { select.add(new Option(v, v)); });
      select.addEventListener("change", function () {
        dt.column(col).search(select.value, { exact: select.value !== "" }).draw();
      });
      label.appendChild(select);
      bar.appendChild(label);
    });
    var container = table.closest(".dt-container");
    container.insertBefore(bar, container.firstChild);
  }

  document.querySelectorAll("table.dt").forEach(function (table) {
    var full = table.getAttribute("data-dt") === "full";
    var name = table.getAttribute("data-name") || "table";
    var options = {
      paging: false,
      info: full,
      searching: full,
      order: [],
      autoWidth: false,
      columnDefs: [{ targets: indices(table, "data-hidden"), visible: false }],
      language: { search: "Search:", info: "_TOTAL_ rows", infoFiltered: " (of _MAX_)", infoEmpty: "no rows" },
      layout: full
        ? {
            topStart: {
              buttons: [
                { extend: "colvis", text: "Columns", collectionLayout: "fixed columns" },
                { extend: "csvHtml5", text: "CSV (rows shown)", filename: name, exportOptions: { columns: ":visible", format: { body: cellText } } },
              ],
            },
            topEnd: "search",
            bottomStart: "info",
            bottomEnd: null,
          }
        : { topStart: null, topEnd: null, bottomStart: null, bottomEnd: null },
    };
    var dt = new DataTable(table, options);
    if (full) addFilters(table, dt, indices(table, "data-filters"));
  });
})();
