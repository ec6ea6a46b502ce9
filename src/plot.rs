//! `cml-rl plot RUN_DIR... [-o curves.png] [--x frames|seconds]`: the
//! learning curves (mean return of the last 100 episodes, from each run's
//! metrics.csv) of one or more runs in one PNG, with the run names as the
//! legend.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

/// Where the labels' font is looked for (plotters draws text with a font
/// file; PNG output has no system text renderer to fall back on).
const FONT_FILES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// The x axis of the plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    /// Env frames the actors produced (`env_frames`).
    Frames,
    /// Seconds trained (`wall_s`).
    Seconds,
}

/// One run's curve: (x, mean return) for every report that has a mean.
pub fn read_curve(run_dir: &Path, x: XAxis) -> anyhow::Result<Vec<(f64, f64)>> {
    let path = run_dir.join("metrics.csv");
    let mut reader = csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}", path.display()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let x_column = column(match x {
        XAxis::Frames => "env_frames",
        XAxis::Seconds => "wall_s",
    })?;
    let y_column = column("mean_return_100")?;
    let mut curve = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), line + 2))?;
        let parse = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
        if let (Some(x), Some(y)) = (parse(x_column), parse(y_column)) {
            curve.push((x, y));
        }
    }
    Ok(curve)
}

fn register_font() -> anyhow::Result<()> {
    let file = FONT_FILES
        .iter()
        .find(|f| Path::new(f).exists())
        .with_context(|| format!("no font for the labels; looked for {FONT_FILES:?} (Debian: fonts-dejavu-core)"))?;
    let bytes = std::fs::read(file).with_context(|| file.to_string())?;
    // plotters keeps fonts for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow::anyhow!("{file}: not a font plotters can read"))
}

/// Draws the curves of `runs` into the PNG `out`.
pub fn run_plot(runs: &[PathBuf], out: &Path, x: XAxis) -> anyhow::Result<()> {
    let mut curves = Vec::with_capacity(runs.len());
    for run in runs {
        let name = run
            .file_name()
            .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
        curves.push((name, read_curve(run, x)?));
    }
    let points = curves.iter().flat_map(|(_, c)| c.iter());
    let (mut x_hi, mut y_lo, mut y_hi) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(px, py) in points {
        x_hi = x_hi.max(px);
        y_lo = y_lo.min(py);
        y_hi = y_hi.max(py);
    }
    if !y_lo.is_finite() {
        anyhow::bail!("no report with a mean return in {runs:?}");
    }
    let pad = ((y_hi - y_lo) * 0.05).max(1.0);
    register_font()?;
    let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
    let draw = |e| anyhow::anyhow!("drawing {}: {e}", out.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("mean return of the last 100 episodes", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_hi.max(1.0), (y_lo - pad)..(y_hi + pad))
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(match x {
            XAxis::Frames => "env frames produced",
            XAxis::Seconds => "seconds trained",
        })
        .y_desc("return")
        .draw()
        .map_err(draw)?;
    for (i, (name, curve)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(curve.iter().copied(), color.stroke_width(2)))
            .map_err(draw)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    println!("wrote {} ({} runs)", out.display(), runs.len());
    Ok(())
}
