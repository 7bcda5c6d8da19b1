//! `report.html`: one self-contained page per run and per comparison (inline SVG, images as
//! data URIs, no scripts, no network), readable in any browser and easy to mail around.
//! Built from the files already in the folder, so it shows exactly what was written.

use std::path::Path;

use crate::plots::xml_escape as escape;
use crate::results::files;

fn read(dir: &Path, name: &str) -> Option<String> {
    crate::results::bounded::read_to_string(&dir.join(name), &crate::results::bounded::RUN_FILE).ok()
}

/// An inline SVG figure from `<stem>.svg`, if present.
fn figure(dir: &Path, stem: &str, caption: &str) -> String {
    match read(dir, &format!("{stem}.svg")) {
        Some(svg) => {
            let svg = svg.trim_start_matches(|c| c != '<');
            let svg = if svg.starts_with("<?xml") {
                svg.split_once("?>").map_or(svg, |(_, rest)| rest.trim_start())
            } else {
                svg
            };
            format!("<figure>{svg}<figcaption>{}</figcaption></figure>\n", escape(caption))
        }
        None => String::new(),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}\n\
         figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}\n\
         figure svg {{ max-width: 100%; height: auto; }}\n\
         figcaption {{ text-align: center; color: #555; }}\n\
         pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}\n\
         th {{ background: #eee; }}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n{body}</body>\n</html>\n",
        escape(title),
        escape(title)
    )
}

/// A Markdown table (as `leaderboard.md` writes it) as HTML.
fn table(markdown: &str) -> String {
    let rows: Vec<Vec<&str>> = markdown
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    html_table(&rows)
}

/// Rows of cells as an HTML table, the first row as its header.
fn html_table<S: AsRef<str>>(rows: &[Vec<S>]) -> String {
    let mut out = String::from("<div style=\"overflow-x: auto\"><table>\n");
    for (i, row) in rows.iter().enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        out += "<tr>";
        for c in row {
            out += &format!("<{cell}>{}</{cell}>", escape(c.as_ref()));
        }
        out += "</tr>\n";
    }
    out + "</table></div>\n"
}

/// The per-class section of `split` from the files `names` gives, if the run wrote them: the
/// headline areas, the table (numbers to four places; `per_class.csv` has them in full) and
/// the three pictures.
fn per_class(dir: &Path, split: &str, names: &files::PerClass) -> String {
    let Some(json) = read(dir, names.json).and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok()) else {
        return String::new();
    };
    let number = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
    let of = match json["positive_class"].as_str() {
        Some(c) => format!(" (of the positive class, {})", escape(c)),
        None => " (means over the classes, each against the rest)".to_string(),
    };
    let mut out = format!(
        "<h3>Per class ({split})</h3>\n<p>ROC AUC {}, average precision {}{}; {} {}.</p>\n",
        number(&json["auc"]),
        number(&json["pr_auc"]),
        of,
        if json["multi_label"].as_bool() == Some(true) { "every label right (exact match)" } else { "accuracy" },
        number(&json["accuracy"]),
    );
    let header = ["class", "precision", "recall", "f1_score", "support", "roc_auc", "average_precision"];
    let mut rows: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
    let row = |name: String, v: &serde_json::Value| {
        let mut cells = vec![name];
        cells.extend(["precision", "recall", "f1_score"].map(|k| number(&v[k])));
        cells.push(v["support"].to_string());
        cells.extend(["roc_auc", "average_precision"].map(|k| number(&v[k])));
        cells
    };
    for class in json["classes"].as_array().into_iter().flatten() {
        rows.push(row(class["class"].as_str().unwrap_or("?").to_string(), class));
    }
    rows.push(row("macro avg".into(), &json["macro_avg"]));
    rows.push(row("weighted avg".into(), &json["weighted_avg"]));
    out += &html_table(&rows);
    out += &figure(dir, names.roc, "ROC curves");
    out += &figure(dir, names.precision_recall, "Precision-recall curves");
    out += &figure(dir, names.calibration, "Reliability diagram");
    out
}

/// The report of the run folder `dir`.
pub fn run_page(dir: &Path) -> String {
    let mut body = String::new();
    if let Some(manifest) = read(dir, files::MANIFEST).and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
    {
        let status = manifest["status"]["state"].as_str().unwrap_or("unknown");
        let seconds: f64 = manifest["epoch_seconds"].as_array().into_iter().flatten().filter_map(|v| v.as_f64()).sum();
        body += &format!(
            "<p>Status: <b>{}</b>. Started {}, {:.1} s of training on {} ({} threads). Data: {} ({} training, {} validation, {} test images).</p>\n",
            escape(status),
            escape(manifest["started_at"].as_str().unwrap_or("-")),
            seconds,
            escape(manifest["device"].as_str().unwrap_or("-")),
            manifest["threads"],
            escape(manifest["dataset"]["path"].as_str().unwrap_or("-")),
            manifest["dataset"]["train"],
            manifest["dataset"]["validation"],
            manifest["dataset"]["test"],
        );
    }
    if let Some(m) = read(dir, files::MANIFEST).and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok()) {
        if let Some(best) = m["best_epoch"].as_u64() {
            let stopped = m["stopped_early_after"].as_u64().map(|e| format!("; early stopping after epoch {e}"));
            body += &format!("<p>Best epoch: {best}{}.</p>\n", stopped.unwrap_or_default());
        }
    }
    if let Some(test) = read(dir, files::TEST_METRICS).and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        body += &format!(
            "<p>Test split (weights of epoch {}): accuracy {}, loss {}.</p>\n",
            test["epoch"], test["accuracy"], test["loss"]
        );
    }
    body += "<h2>Training</h2>\n";
    body += &figure(dir, "accuracy", "Accuracy");
    body += &figure(dir, "loss", "Loss");
    body += &figure(dir, "learning_rate", "Learning rate");
    body += "<h2>Validation</h2>\n";
    body += &figure(dir, files::CONFUSION, "Confusion matrix");
    body += &figure(dir, files::PREDICTIONS, "Predictions (mistakes first, in red)");
    body += &figure(dir, files::TEST_CONFUSION, "Confusion matrix (test)");
    body += &per_class(dir, "validation", &files::PER_CLASS);
    body += &per_class(dir, "test", &files::TEST_PER_CLASS);
    body += "<h2>Data</h2>\n";
    body += &figure(dir, files::SAMPLES, "Samples per class");
    body += &figure(dir, files::CLASS_COUNTS, "Images per class and split");
    body += &figure(dir, files::AUGMENTATIONS, "Augmentation");
    if let Some(summary) = read(dir, files::SUMMARY) {
        body += &format!("<h2>Model</h2>\n<pre>{}</pre>\n", escape(&summary));
    }
    if let Ok(history) = crate::train::history::Table::read(&dir.join(files::HISTORY_CSV)) {
        let rows = std::iter::once(&history.header).chain(&history.rows);
        let md: String = rows.map(|row| format!("| {} |\n", row.join(" | "))).collect();
        body += &format!("<h2>History</h2>\n{}", table(&md));
    }
    if let Some(config) = read(dir, files::CONFIG) {
        body += &format!("<h2>Config</h2>\n<pre>{}</pre>\n", escape(&config));
    }
    let name = crate::results::run_name(dir);
    page(&format!("runner: {name}"), &body)
}

/// The report of the comparison folder `dir`.
pub fn comparison_page(dir: &Path) -> String {
    let mut body = String::new();
    if let Some(md) = read(dir, "leaderboard.md") {
        // A cross-validation's section follows the leaderboard's table, as its own table.
        let (md, folds) = md.split_once("\n## Cross-validation").unwrap_or((&md, ""));
        body += "<h2>Leaderboard</h2>\n";
        body += &table(md);
        if !folds.is_empty() {
            body +=
                "<h2>Cross-validation</h2>\n<p>Mean ± standard deviation over the folds, each at its best epoch.</p>\n";
            body += &table(folds);
        }
        let notes: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("- ")).collect();
        if !notes.is_empty() {
            body += "<ul>\n";
            notes.iter().for_each(|n| body += &format!("<li>{}</li>\n", escape(n)));
            body += "</ul>\n";
        }
    }
    body += "<h2>Curves</h2>\n";
    body += &figure(dir, "compare_accuracy", "Accuracy (validation solid, training dashed)");
    body += &figure(dir, "compare_loss", "Loss (validation solid, training dashed)");
    // A sweep's folder also has the metric against each swept key.
    let mut sweep_plots: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".svg").map(str::to_string))
        .filter(|stem| stem.starts_with("sweep_"))
        .collect();
    sweep_plots.sort();
    if !sweep_plots.is_empty() {
        body += "<h2>Sweep</h2>\n";
        for stem in sweep_plots {
            body += &figure(dir, &stem, &stem);
        }
    }
    page("runner: comparison", &body)
}
