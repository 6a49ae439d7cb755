//! The lake at a glance: rows per layer, waiting and quarantined rides, the top drivers, rides and
//! distance per month and the daily KPIs, read from the silver and gold tables
//! ([`summarize`]); and the same as a self-contained HTML page with inline SVG charts, no script
//! and no network access ([`render_html`]).
//!
//! Guarantee: every figure the page draws comes from [`LakeSummary`], which is embedded in the
//! page as JSON (`<script type="application/json" id="ridelake-summary">`), so that a test can
//! check the page against the tables it was read from. Row counts come from the Delta statistics
//! of each table's files (or a read of one column where a file has none).

use std::fmt::Write as _;

use polars::prelude::*;
use serde::Serialize;

use crate::error::{LakehouseError, PolarsContext, Result};
use crate::gold::GOLD_TABLES;
use crate::io;
use crate::keys::Key;
use crate::layout::LakeLayout;

/// Rows of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRows {
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// Table name (bronze: the stream; silver: as the model names it).
    pub table: String,
    /// Rows, or `None` when the table does not exist yet.
    pub rows: Option<u64>,
}

/// One driver of `gold/driver_stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopDriver {
    /// Driver (user id: an integer or text, as the users' key).
    pub driver_id: Key,
    /// Completed rides.
    pub completed: i64,
    /// Rides assigned (any status).
    pub rides: i64,
    /// Distance of completed rides, km.
    pub distance_km: f64,
    /// Fare of completed rides.
    pub fare: f64,
    /// Mean rating given to the driver, when rated.
    pub mean_rating: Option<f64>,
}

/// One month of `gold/monthly_distance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    /// Rides requested.
    pub rides: i64,
    /// Rides completed.
    pub completed: i64,
    /// Distance of completed rides, km.
    pub distance_km: f64,
    /// Fare of completed rides.
    pub gross_fare: f64,
}

/// One day of `gold/daily_city_kpis`, summed over cities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Rides requested.
    pub requested: i64,
    /// Rides completed.
    pub completed: i64,
    /// Rides cancelled.
    pub cancelled: i64,
    /// `cancelled / requested`.
    pub cancellation_rate: f64,
    /// Fare of completed rides.
    pub gross_fare: f64,
}

/// What [`summarize`] read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LakeSummary {
    /// Rows of every table of the three layers.
    pub tables: Vec<TableRows>,
    /// Rides waiting for their users (`silver/rides_pending`).
    pub pending_rides: u64,
    /// Changes quarantined (`silver/quarantine`).
    pub quarantined: u64,
    /// Drivers with the most completed rides, best first (ties by id).
    pub top_drivers: Vec<TopDriver>,
    /// Months in order.
    pub months: Vec<Month>,
    /// Days in order.
    pub days: Vec<Day>,
}

fn ints(frame: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    let series = frame.column(name).step("reading a gold column")?.as_materialized_series().cast(&DataType::Int64).step("reading a gold column")?;
    Ok(series.i64().step("reading a gold column")?.iter().collect())
}

/// A key column's values (integers, or text for a text key; gold has no null key, which would
/// read as 0 or "").
fn keys(frame: &DataFrame, name: &str) -> Result<Vec<Key>> {
    let series = frame.column(name).step("reading a gold column")?.as_materialized_series();
    if crate::keys::is_text(series.dtype()) {
        return Ok(series.str().step("reading a gold column")?.iter().map(|k| Key::Text(k.unwrap_or_default().to_owned())).collect());
    }
    Ok(ints(frame, name)?.into_iter().map(|k| Key::Int(k.unwrap_or_default())).collect())
}

fn floats(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let series = frame.column(name).step("reading a gold column")?.as_materialized_series().cast(&DataType::Float64).step("reading a gold column")?;
    Ok(series.f64().step("reading a gold column")?.iter().collect())
}

async fn read_gold(layout: &LakeLayout, table: &str) -> Result<Option<DataFrame>> {
    match io::open(&layout.gold(table)?, &layout.storage_options()).await? {
        Some(t) => Ok(Some(io::read_all(&t).await?)),
        None => Ok(None),
    }
}

/// Reads the summary of the lake; tables that do not exist yet count as absent or empty.
pub async fn summarize(layout: &LakeLayout, top: usize) -> Result<LakeSummary> {
    let options = layout.storage_options();
    let mut tables = Vec::new();
    // Bronze streams as the model names them (`users` and `rides` by default).
    let bronze: Vec<&str> = layout.model.user_maps().into_iter().chain([&layout.model.rides]).map(|m| m.stream.as_str()).collect();
    for (layer, names) in [("bronze", &bronze[..]), ("silver", &crate::maintain::SILVER_TABLES[..]), ("gold", &GOLD_TABLES[..])] {
        for name in names {
            let url = match layer {
                "bronze" => layout.bronze(name)?,
                "silver" => layout.silver(name)?,
                _ => layout.gold(name)?,
            };
            let rows = match io::open(&url, &options).await? {
                Some(t) => Some(io::row_count(&t).await?),
                None => None,
            };
            // (silver's tables by the names the model gives them)
            let table = if layer == "silver" { layout.model.silver_table(name) } else { (*name).to_owned() };
            tables.push(TableRows { layer: layer.into(), table, rows });
        }
    }
    let rows_of = |layer: &str, table: &str| tables.iter().find(|t| t.layer == layer && t.table == layout.model.silver_table(table)).and_then(|t| t.rows).unwrap_or(0);
    let (pending_rides, quarantined) = (rows_of("silver", "rides_pending"), rows_of("silver", "quarantine"));

    let mut top_drivers = Vec::new();
    if let Some(stats) = read_gold(layout, "driver_stats").await? {
        let best = stats
            .lazy()
            .sort(["completed", "driver_id"], SortMultipleOptions::default().with_order_descending_multi([true, false]))
            .limit(top as IdxSize)
            .collect()
            .step("ranking drivers")?;
        let ids = keys(&best, "driver_id")?;
        let (completed, rides) = (ints(&best, "completed")?, ints(&best, "rides")?);
        let (distance, fare, rating) = (floats(&best, "distance_km")?, floats(&best, "fare")?, floats(&best, "mean_rating")?);
        for i in 0..best.height() {
            top_drivers.push(TopDriver {
                driver_id: ids[i].clone(),
                completed: completed[i].unwrap_or_default(),
                rides: rides[i].unwrap_or_default(),
                distance_km: distance[i].unwrap_or_default(),
                fare: fare[i].unwrap_or_default(),
                mean_rating: rating[i],
            });
        }
    }

    let mut months = Vec::new();
    if let Some(monthly) = read_gold(layout, "monthly_distance").await? {
        let monthly = monthly.sort(["year", "month"], Default::default()).step("ordering months")?;
        let (year, month, rides, completed) = (ints(&monthly, "year")?, ints(&monthly, "month")?, ints(&monthly, "rides")?, ints(&monthly, "completed")?);
        let (distance, fare) = (floats(&monthly, "distance_km")?, floats(&monthly, "gross_fare")?);
        for i in 0..monthly.height() {
            months.push(Month {
                month: format!("{:04}-{:02}", year[i].unwrap_or_default(), month[i].unwrap_or_default()),
                rides: rides[i].unwrap_or_default(),
                completed: completed[i].unwrap_or_default(),
                distance_km: distance[i].unwrap_or_default(),
                gross_fare: fare[i].unwrap_or_default(),
            });
        }
    }

    let mut days = Vec::new();
    if let Some(kpis) = read_gold(layout, "daily_city_kpis").await? {
        let daily = kpis
            .lazy()
            .group_by([col("year"), col("month"), col("day")])
            .agg([col("requested").sum(), col("completed").sum(), col("cancelled").sum(), col("gross_fare").sum()])
            .sort(["year", "month", "day"], Default::default())
            .collect()
            .step("summing days over cities")?;
        let (year, month, day) = (ints(&daily, "year")?, ints(&daily, "month")?, ints(&daily, "day")?);
        let (requested, completed, cancelled, fare) = (ints(&daily, "requested")?, ints(&daily, "completed")?, ints(&daily, "cancelled")?, floats(&daily, "gross_fare")?);
        for i in 0..daily.height() {
            let requested = requested[i].unwrap_or_default();
            let cancelled = cancelled[i].unwrap_or_default();
            days.push(Day {
                date: format!("{:04}-{:02}-{:02}", year[i].unwrap_or_default(), month[i].unwrap_or_default(), day[i].unwrap_or_default()),
                requested,
                completed: completed[i].unwrap_or_default(),
                cancelled,
                cancellation_rate: if requested > 0 { cancelled as f64 / requested as f64 } else { 0.0 },
                gross_fare: fare[i].unwrap_or_default(),
            });
        }
    }
    Ok(LakeSummary { tables, pending_rides, quarantined, top_drivers, months, days })
}

// ---- HTML ----------------------------------------------------------------------------------------

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_BOTTOM: f64 = 40.0;
const MARGIN_TOP: f64 = 30.0;
const COLORS: [&str; 3] = ["#2b6cb0", "#2f855a", "#c53030"];
const LABEL_FONT: f64 = 11.0;
const LEGEND_FONT: f64 = 12.0;
/// Baseline of the x-axis labels: low enough that the first one clears the y-axis label `0`.
const X_LABEL_Y: f64 = HEIGHT - MARGIN_BOTTOM + 20.0;
/// Least room between two x-axis labels.
const LABEL_GAP: f64 = 10.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A number with thousands separators and `decimals` decimals.
fn number(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && value.abs() >= 0.5 * 10f64.powi(-(decimals as i32)) { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Width of `text` drawn at `size`, on the safe side: an SVG without script cannot measure its
/// text, and the widest common sans-serif fallback (DejaVu Sans) draws digits 0.64 em wide.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.65
}

/// Every how many labels, `spacing` apart, one is drawn so that none overlaps the next.
fn label_every(labels: &[String], spacing: f64) -> usize {
    let widest = labels.iter().map(|l| text_width(l, LABEL_FONT)).fold(0.0_f64, f64::max);
    ((widest + LABEL_GAP) / spacing).ceil().max(1.0) as usize
}

/// An x-axis label centred at `x`; left out where it would be cut at the right edge.
fn x_label(svg: &mut String, x: f64, label: &str) {
    if x + text_width(label, LABEL_FONT) / 2.0 <= WIDTH {
        let _ = write!(svg, r#"<text x="{x:.1}" y="{X_LABEL_Y}" text-anchor="middle" font-size="{LABEL_FONT}">{}</text>"#, escape(label));
    }
}

/// Draws the y axis from 0 to `max` or just above, in at most five round steps (1, 2 or 5 times a
/// power of ten, none finer than `decimals` shows); returns the top of the axis.
fn axis(svg: &mut String, max: f64, decimals: usize) -> f64 {
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let least = (max / 5.0).max(10f64.powi(-(decimals as i32)));
    let magnitude = 10f64.powi(least.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0].into_iter().map(|m| m * magnitude).find(|s| *s >= least).unwrap_or(10.0 * magnitude);
    let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
    let top = step * steps as f64;
    for i in 0..=steps {
        let value = step * i as f64;
        let y = HEIGHT - MARGIN_BOTTOM - plot_h * value / top;
        let _ = write!(svg, r##"<line x1="{MARGIN_LEFT}" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}" stroke="#e2e8f0"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="{LABEL_FONT}">{}</text>"##, MARGIN_LEFT - 6.0, y + 4.0, number(value, decimals));
    }
    top
}

fn chart_start(title: &str) -> String {
    format!(r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{}">"#, escape(title), escape(title))
}

/// A bar chart of one series; each bar has its value as a tooltip.
fn bar_chart(title: &str, labels: &[String], values: &[f64], decimals: usize) -> String {
    let mut svg = chart_start(title);
    let top = axis(&mut svg, values.iter().copied().fold(0.0_f64, f64::max).max(1.0), decimals);
    let plot_w = WIDTH - MARGIN_LEFT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let slot = plot_w / labels.len().max(1) as f64;
    let every = label_every(labels, slot);
    for (i, (label, value)) in labels.iter().zip(values).enumerate() {
        let h = plot_h * value / top;
        let x = MARGIN_LEFT + slot * i as f64 + slot * 0.15;
        let y = HEIGHT - MARGIN_BOTTOM - h;
        let _ = write!(svg, r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect>"#, slot * 0.7, COLORS[0], escape(label), number(*value, decimals));
        if i % every == 0 {
            x_label(&mut svg, x + slot * 0.35, label);
        }
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// A line chart of several series over the same labels, with a legend.
fn line_chart(title: &str, labels: &[String], series: &[(&str, Vec<f64>)], decimals: usize) -> String {
    let mut svg = chart_start(title);
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0_f64, f64::max);
    let top = axis(&mut svg, if max > 0.0 { max } else { 1.0 }, decimals);
    // The last point leaves room on its right for half of its label (and a little: no rounding drops it).
    let margin_right = labels.last().map_or(0.0, |l| text_width(l, LABEL_FONT) / 2.0 + 2.0).max(10.0);
    let plot_w = WIDTH - MARGIN_LEFT - margin_right;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let step = plot_w / (labels.len().max(2) - 1) as f64;
    let every = label_every(labels, step);
    for (i, label) in labels.iter().enumerate() {
        if i % every == 0 {
            x_label(&mut svg, MARGIN_LEFT + step * i as f64, label);
        }
    }
    let mut legend_x = MARGIN_LEFT;
    for (k, (name, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", MARGIN_LEFT + step * i as f64, HEIGHT - MARGIN_BOTTOM - plot_h * v / top))
            .collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, points.join(" "));
        let _ = write!(svg, r#"<rect x="{legend_x:.1}" y="8" width="10" height="10" fill="{color}"/><text x="{:.1}" y="17" font-size="{LEGEND_FONT}">{}</text>"#, legend_x + 14.0, escape(name));
        legend_x += (14.0 + text_width(name, LEGEND_FONT) + 20.0).max(140.0);
    }
    svg.push_str("</svg></figure>\n");
    svg
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The summary as one self-contained HTML page titled `title`.
pub fn render_html(summary: &LakeSummary, title: &str) -> Result<String> {
    let data = serde_json::to_string(summary).map_err(|e| LakehouseError::Output(format!("rendering the report: {e}")))?;
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t}</title><style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 900px; color: #1a202c; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }} td, th {{ border-bottom: 1px solid #e2e8f0; padding: 0.2em 0.8em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }} figure {{ margin: 1em 0 2em; }} figcaption {{ font-weight: 600; }}
</style></head><body><h1>{t}</h1>
"#,
        t = escape(title)
    );
    let _ = write!(html, "<p>{} rides waiting for their users; {} changes quarantined.</p>\n", number(summary.pending_rides as f64, 0), number(summary.quarantined as f64, 0));

    html.push_str("<h2>Rides and distance per month</h2>\n");
    let months: Vec<String> = summary.months.iter().map(|m| m.month.clone()).collect();
    html.push_str(&bar_chart("Rides requested per month", &months, &summary.months.iter().map(|m| m.rides as f64).collect::<Vec<_>>(), 0));
    html.push_str(&bar_chart("Distance of completed rides per month (km)", &months, &summary.months.iter().map(|m| m.distance_km).collect::<Vec<_>>(), 0));
    let rows: Vec<Vec<String>> = summary
        .months
        .iter()
        .map(|m| vec![m.month.clone(), number(m.rides as f64, 0), number(m.completed as f64, 0), number(m.distance_km, 1), number(m.gross_fare, 2)])
        .collect();
    html.push_str(&table(&["month", "rides", "completed", "distance km", "gross fare"], &rows));

    html.push_str("<h2>Daily KPIs</h2>\n");
    let dates: Vec<String> = summary.days.iter().map(|d| d.date.clone()).collect();
    html.push_str(&line_chart(
        "Rides per day",
        &dates,
        &[
            ("requested", summary.days.iter().map(|d| d.requested as f64).collect()),
            ("completed", summary.days.iter().map(|d| d.completed as f64).collect()),
            ("cancelled", summary.days.iter().map(|d| d.cancelled as f64).collect()),
        ],
        0,
    ));
    html.push_str(&line_chart("Cancellation rate per day (%)", &dates, &[("cancelled / requested", summary.days.iter().map(|d| d.cancellation_rate * 100.0).collect())], 1));
    let rows: Vec<Vec<String>> = summary
        .days
        .iter()
        .rev()
        .take(14)
        .map(|d| vec![d.date.clone(), number(d.requested as f64, 0), number(d.completed as f64, 0), number(d.cancelled as f64, 0), format!("{:.1}%", d.cancellation_rate * 100.0), number(d.gross_fare, 2)])
        .collect();
    html.push_str("<p>The last 14 days:</p>\n");
    html.push_str(&table(&["day", "requested", "completed", "cancelled", "cancellation rate", "gross fare"], &rows));

    html.push_str("<h2>Top drivers</h2>\n");
    let drivers: Vec<String> = summary.top_drivers.iter().map(|d| format!("#{}", d.driver_id)).collect();
    html.push_str(&bar_chart("Completed rides of the top drivers", &drivers, &summary.top_drivers.iter().map(|d| d.completed as f64).collect::<Vec<_>>(), 0));
    let rows: Vec<Vec<String>> = summary
        .top_drivers
        .iter()
        .map(|d| {
            let rating = d.mean_rating.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
            vec![d.driver_id.to_string(), number(d.completed as f64, 0), number(d.rides as f64, 0), number(d.distance_km, 1), number(d.fare, 2), rating]
        })
        .collect();
    html.push_str(&table(&["driver", "completed", "rides", "distance km", "fare", "mean rating"], &rows));

    html.push_str("<h2>Tables</h2>\n");
    let rows: Vec<Vec<String>> = summary
        .tables
        .iter()
        .map(|t| vec![format!("{}/{}", t.layer, t.table), t.rows.map_or_else(|| "not yet built".to_owned(), |r| number(r as f64, 0))])
        .collect();
    html.push_str(&table(&["table", "rows"], &rows));
    // `</` cannot occur inside the JSON's strings once `/` is escaped after `<`.
    let _ = write!(html, "<script type=\"application/json\" id=\"ridelake-summary\">{}</script>\n</body></html>\n", data.replace("</", "<\\/"));
    Ok(html)
}

/// Summarizes the lake and writes the HTML page to the local file `path`; returns the summary.
pub async fn write_report(layout: &LakeLayout, path: &std::path::Path, title: &str, top: usize) -> Result<LakeSummary> {
    let summary = summarize(layout, top).await?;
    let html = render_html(&summary, title)?;
    std::fs::write(path, html).map_err(|e| LakehouseError::Output(format!("cannot write {}: {e}", path.display())))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> LakeSummary {
        LakeSummary {
            tables: vec![TableRows { layer: "gold".into(), table: "driver_stats".into(), rows: Some(2) }],
            pending_rides: 3,
            quarantined: 1,
            top_drivers: vec![TopDriver { driver_id: Key::Int(5), completed: 1234, rides: 1300, distance_km: 10.5, fare: 99.0, mean_rating: None }],
            months: vec![Month { month: "2025-01".into(), rides: 10, completed: 8, distance_km: 80.25, gross_fare: 100.0 }],
            days: vec![
                Day { date: "2025-01-01".into(), requested: 4, completed: 3, cancelled: 1, cancellation_rate: 0.25, gross_fare: 30.0 },
                Day { date: "2025-01-02".into(), requested: 6, completed: 5, cancelled: 1, cancellation_rate: 1.0 / 6.0, gross_fare: 70.0 },
            ],
        }
    }

    #[test]
    fn numbers_have_separators() {
        assert_eq!(number(1234567.891, 1), "1,234,567.9");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(-1500.0, 0), "-1,500");
        assert_eq!(number(0.0, 2), "0.00");
    }

    #[test]
    fn page_embeds_its_data_and_draws_it() {
        let html = render_html(&summary(), "ridelake <lake>").expect("render");
        assert!(html.contains("ridelake &lt;lake&gt;"));
        let start = html.find("id=\"ridelake-summary\">").expect("data block") + "id=\"ridelake-summary\">".len();
        let end = start + html[start..].find("</script>").expect("end of data");
        let data: serde_json::Value = serde_json::from_str(&html[start..end]).expect("json");
        assert_eq!(data["top_drivers"][0]["completed"], 1234);
        assert!(html.contains("<title>#5: 1,234</title>"), "the driver's bar carries its value");
        assert!(html.contains("<title>2025-01: 10</title>"));
        assert_eq!(html.matches("<polyline").count(), 4, "three daily series and the cancellation rate");
        assert!(!html.contains("http://") || html.matches("http://").count() == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(), "no network resources");
    }

    /// The (x, text) of every `<text>` of `svg` drawn at baseline `y`, in order.
    fn texts_at(svg: &str, y: f64) -> Vec<(f64, String)> {
        let baseline = format!("y=\"{y}\"");
        svg.split("<text ")
            .skip(1)
            .filter_map(|t| {
                let (tag, rest) = t.split_once('>')?;
                let x: f64 = tag.split_once("x=\"")?.1.split('"').next()?.parse().ok()?;
                tag.contains(&baseline).then(|| (x, rest.split('<').next().unwrap_or_default().to_owned()))
            })
            .collect()
    }

    /// Labels drawn whole inside the chart, each clear of the next.
    fn assert_labels_fit(labels: &[(f64, String)], context: &str) {
        assert!(!labels.is_empty(), "{context}: no label drawn");
        for (x, text) in labels {
            let half = text_width(text, LABEL_FONT) / 2.0;
            assert!(x - half >= 0.0 && x + half <= WIDTH, "{context}: {text:?} at x={x} is cut by the edge of the chart");
        }
        for pair in labels.windows(2) {
            let ((x1, t1), (x2, t2)) = (&pair[0], &pair[1]);
            let needed = (text_width(t1, LABEL_FONT) + text_width(t2, LABEL_FONT)) / 2.0 + LABEL_GAP;
            assert!(x2 - x1 + 0.11 >= needed, "{context}: {t1:?} at {x1} and {t2:?} at {x2} overlap");
        }
    }

    #[test]
    fn x_labels_are_inside_the_chart_and_apart_whatever_their_number() {
        for n in [1, 2, 3, 7, 12, 13, 15, 20, 21, 40, 92, 365, 1000] {
            let days: Vec<String> = (0..n).map(|i| format!("{:04}-{:02}-{:02}", 2024 + i / 360, 1 + i / 30 % 12, 1 + i % 30)).collect();
            let months: Vec<String> = (0..n).map(|i| format!("{:04}-{:02}", 2020 + i / 12, 1 + i % 12)).collect();
            let drivers: Vec<String> = (0..n).map(|i| format!("#{}", 9_000_000_000_i64 + i as i64)).collect();
            let line = line_chart("days", &days, &[("requested", vec![1.0; n])], 0);
            let labels = texts_at(&line, X_LABEL_Y);
            assert_labels_fit(&labels, &format!("{n} days"));
            assert_eq!(labels[0].1, days[0], "the first day is labelled");
            if n <= 9 {
                assert_eq!(labels.len(), n, "{n} days: each day is labelled");
            }
            for (what, names) in [("months", &months), ("drivers", &drivers)] {
                let bars = bar_chart(what, names, &vec![1.0; n], 0);
                assert_labels_fit(&texts_at(&bars, X_LABEL_Y), &format!("{n} {what}"));
            }
        }
    }

    #[test]
    fn legend_entries_are_apart_and_inside_the_chart() {
        let days = ["2025-01-01".to_owned(), "2025-01-02".to_owned()];
        let names = ["requested", "cancelled / requested", "a series with a much longer name"];
        let series: Vec<(&str, Vec<f64>)> = names.iter().map(|n| (*n, vec![1.0, 2.0])).collect();
        let legend = texts_at(&line_chart("rides", &days, &series, 0), 17.0);
        assert_eq!(legend.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), names);
        for pair in legend.windows(2) {
            let ((x1, t1), (x2, _)) = (&pair[0], &pair[1]);
            assert!(x1 + text_width(t1, LEGEND_FONT) + 14.0 <= *x2, "{t1:?} runs into the next entry");
        }
        let (x, last) = &legend[2];
        assert!(x + text_width(last, LEGEND_FONT) <= WIDTH, "the legend is cut at the right edge");
    }

    #[test]
    fn y_axis_steps_are_round_and_distinct() {
        for (max, decimals, top, labels) in [
            (249.0, 0, 250.0, "0 50 100 150 200 250"),
            (4405.0, 0, 5000.0, "0 1,000 2,000 3,000 4,000 5,000"),
            (50_499.0, 0, 60_000.0, "0 20,000 40,000 60,000"),
            (37.1, 1, 40.0, "0.0 10.0 20.0 30.0 40.0"),
            (3.0, 0, 3.0, "0 1 2 3"),
            (1.0, 1, 1.0, "0.0 0.2 0.4 0.6 0.8 1.0"),
        ] {
            let mut svg = String::new();
            assert_eq!(axis(&mut svg, max, decimals), top, "top of the axis up to {max}");
            let drawn: Vec<&str> = svg.split("text-anchor=\"end\"").skip(1).filter_map(|t| t.split_once('>')?.1.split('<').next()).collect();
            assert_eq!(drawn.join(" "), labels, "axis up to {max}");
        }
    }

    #[test]
    fn an_empty_lake_renders() {
        let empty = LakeSummary { tables: vec![], pending_rides: 0, quarantined: 0, top_drivers: vec![], months: vec![], days: vec![] };
        assert!(render_html(&empty, "empty").expect("render").contains("</html>"));
    }
}
