//! `report.html`: self-contained (every resource inline, so none can be missing), and it
//! renders in headless Chromium. Under CI (where `.ci/run` installs Chromium) the browser part
//! is required; elsewhere it runs when Chromium is installed.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// Every `src`, `href` and `url(...)` target in `html`: all must be inline.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "url("] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let end = rest.find(['"', ')']).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists())
}

/// Headless Chromium on `page` with `action` (`--screenshot=…`, `--dump-dom`), in a throwaway
/// profile and with nothing that reaches out to the network.
fn headless(browser: &str, action: &str, page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=1280,2400")
        .arg(action)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// Renders `page` to a PNG screenshot with headless Chromium.
fn screenshot(browser: &str, page: &Path, png: &Path) {
    let out = headless(browser, &format!("--screenshot={}", png.display()), page);
    assert!(png.is_file(), "chromium wrote no screenshot:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// What Chromium laid out on `page`: a copy of it with a script that measures the rendered
/// elements (the heading's text, the figures with their pictures decoded or their curves
/// drawn, the tables' visible rows)
/// and writes them into the DOM, which `--dump-dom` prints once the page has loaded.
fn laid_out(browser: &str, page: &Path) -> serde_json::Value {
    let probe = r#"<script>
const box = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
// A straight horizontal or vertical stroke has no height or no width, but is drawn.
const stroke = e => { const r = e.getBoundingClientRect(); return r.width > 0 || r.height > 0; };
const out = {
  title: document.querySelector('h1').innerText,
  h1_visible: box(document.querySelector('h1')),
  figures: [...document.querySelectorAll('figure')].filter(box).map(f => ({
    caption: (f.querySelector('figcaption') || {}).innerText || '',
    width: f.getBoundingClientRect().width,
    shapes: [...f.querySelectorAll('svg path, svg polyline, svg line, svg rect, svg circle')].filter(stroke).length,
    curves: [...f.querySelectorAll('svg polyline, svg path')].filter(stroke).length,
    decoded: [...f.querySelectorAll('img')].filter(i => box(i) && i.complete).map(i => i.naturalWidth),
  })),
  tables: [...document.querySelectorAll('table')].filter(box).map(t => ({
    header: [...t.querySelectorAll('th')].map(c => c.innerText),
    rows: [...t.querySelectorAll('tr')].filter(box).length,
  })),
};
const pre = document.createElement('pre');
pre.id = 'laid-out';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"#;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("probe.html");
    let html = std::fs::read_to_string(page).unwrap().replace("</body>", &format!("{probe}</body>"));
    std::fs::write(&copy, html).unwrap();
    let out = headless(browser, "--dump-dom", &copy);
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split_once("<pre id=\"laid-out\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| json.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        .unwrap_or_else(|| panic!("Chromium ran no probe:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Fraction of pixels in a horizontal band of the screenshot that are not white.
fn ink(png: &Path, from: f64, to: f64) -> f64 {
    let img = image::open(png).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let rows = (h as f64 * from) as u32..(h as f64 * to) as u32;
    let total = (rows.len() as u32 * w) as f64;
    let dark = rows
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().any(|&c| c < 200))
        .count();
    dark as f64 / total
}

#[test]
fn reports_are_self_contained_and_render_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fashion_subset(&data, &["bag", "trouser", "sandal"], 24);
    let results = tmp.path().join("results");
    std::fs::write(tmp.path().join("exp.toml"), small_config("report", &data, &results, 1, 2, 3)).unwrap();
    assert_exit(&runner(tmp.path(), &["exp.toml"]), 0);
    assert_exit(&runner(tmp.path(), &["exp.toml", "--set", "train.learning_rate=0.01"]), 0);
    assert_exit(&runner(tmp.path(), &["compare", "results", "-o", "cmp"]), 0);

    let pages = [results.join("report/run-001/report.html"), tmp.path().join("cmp/report.html")];
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            html.starts_with("<!DOCTYPE html>") && html.contains("<svg"),
            "{} is not an HTML report with figures",
            page.display()
        );
        assert!(!html.contains("<script"), "reports need no scripts");
        for target in references(&html) {
            assert!(
                target.starts_with("data:") || target.starts_with('#'),
                "{} refers to `{target}`, which may be missing",
                page.display()
            );
        }
    }
    let run_html = std::fs::read_to_string(&pages[0]).unwrap();
    for part in ["Training and validation accuracy", "Confusion matrix", "Total params", "[train]", "epoch | accuracy"]
    {
        assert!(
            run_html.contains(part) || run_html.contains(&part.replace(" | ", "</th><th>")),
            "the run report lacks {part:?}"
        );
    }
    assert!(
        std::fs::read_to_string(&pages[1]).unwrap().contains("train.learning_rate"),
        "the comparison report has the leaderboard"
    );

    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install Chromium (see .ci/run)");
        eprintln!("note: Chromium is not installed; the browser check of report.html was not run");
        return;
    };
    for (page, name) in pages.iter().zip(["run", "comparison"]) {
        let png = tmp.path().join(format!("{name}.png"));
        screenshot(browser, page, &png);
        // Title and curves at the top: the page rendered, with content.
        assert!(ink(&png, 0.0, 0.3) > 0.01, "the {name} report looks blank in Chromium");
    }
    // What the browser shows: the run's name, its curves drawn, its history table.
    let run = laid_out(browser, &pages[0]);
    assert!(run["h1_visible"] == true && run["title"] == "runner: report/run-001", "{run}");
    let figures = run["figures"].as_array().unwrap();
    for caption in ["Accuracy", "Loss", "Confusion matrix"] {
        let figure = figures.iter().find(|f| f["caption"] == caption).unwrap_or_else(|| panic!("no {caption}: {run}"));
        let decoded = figure["decoded"].as_array().unwrap().iter().any(|w| w.as_u64().unwrap() > 200);
        let drawn = figure["shapes"].as_u64().unwrap() > 5;
        assert!(figure["width"].as_f64().unwrap() > 200.0 && (decoded || drawn), "{caption} not shown: {figure}");
    }
    let history = run["tables"].as_array().unwrap().iter().find(|t| t["header"][0] == "epoch").expect("history table");
    assert_eq!(history["rows"], 3, "a header and two epochs: {history}");
    let cmp = laid_out(browser, &pages[1]);
    let board = &cmp["tables"][0];
    assert!(board["rows"].as_u64().unwrap() >= 3 && board["header"].to_string().contains("run"), "{cmp}");
}
