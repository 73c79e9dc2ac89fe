// Draws the plots of a <div class="charts" data-src="/charts/TEAM"> with plotly (served by
// these pages, from the plotly package: no CDN). The page is painted first; the plots' data
// comes from data-src as {name: {title, kind: "bar"|"line", x: [...], series: {name: [...]}}}.
document.querySelectorAll("div.charts[data-src]").forEach(function (box) {
  fetch(box.dataset.src, {credentials: "same-origin"}).then(function (answer) {
    if (!answer.ok) throw new Error(box.dataset.src + ": " + answer.status);
    return answer.json();
  }).then(function (specs) {
    Object.keys(specs).forEach(function (name) {
      var spec = specs[name];
      var div = document.createElement("div");
      div.className = "chart";
      div.id = "chart-" + name;
      div.setAttribute("data-chart", JSON.stringify(spec));
      box.appendChild(div);
      var traces = Object.keys(spec.series).map(function (key) {
        return {x: spec.x, y: spec.series[key], name: key || spec.title,
                type: spec.kind === "line" ? "scatter" : "bar",
                mode: spec.kind === "line" ? "lines+markers" : undefined};
      });
      Plotly.newPlot(div, traces, {title: {text: spec.title, font: {size: 14}},
                                   margin: {l: 45, r: 15, t: 40, b: 40},
                                   showlegend: traces.length > 1, barmode: "group"},
                     {displayModeBar: false, responsive: true});
      div.setAttribute("data-drawn", "1");
    });
    box.setAttribute("data-drawn", "1");
  }).catch(function (error) {
    box.textContent = "The plots could not be loaded (" + error.message + ")";
  });
});
