// Draws each <div class="chart" data-chart="{...}"> with plotly (served by these pages, from
// the plotly package: no CDN). A spec: {title, kind: "bar"|"line", x: [...], series: {name: [...]}}.
document.querySelectorAll("div.chart[data-chart]").forEach(function (div) {
  var spec = JSON.parse(div.dataset.chart);
  var traces = Object.keys(spec.series).map(function (name) {
    return {x: spec.x, y: spec.series[name], name: name || spec.title,
            type: spec.kind === "line" ? "scatter" : "bar",
            mode: spec.kind === "line" ? "lines+markers" : undefined};
  });
  Plotly.newPlot(div, traces, {title: {text: spec.title, font: {size: 14}},
                               margin: {l: 45, r: 15, t: 40, b: 40},
                               showlegend: traces.length > 1, barmode: "group"},
                 {displayModeBar: false, responsive: true, staticPlot: false});
  div.setAttribute("data-drawn", "1");
});
