//! `index tune`: RVC's faiss tips leave the list count and the refine depth open. This sweeps
//! them on a user's own features at nprobe = 1 — frames held out of the index are searched,
//! recall@k is measured against exact search, and the worker's block path is timed — then
//! recommends a setting. CLI, main thread (index training uses every core).

use std::path::Path;
use std::time::Instant;

use faiss::{Index, MetricType};

use super::build::{build_index, BuildOptions, Phase};
use super::faiss_index::{FeatureIndex, RetrievalError, SearchSettings};
use super::index_file::Metric;
use super::search::Retriever;
use crate::npy::Matrix;

/// Frames per timed block: 0.5 s of audio, RVC's usual block.
pub const BLOCK_FRAMES: usize = 25;
/// Recall the recommendation aims for.
pub const TARGET_RECALL: f64 = 0.95;

/// What to sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// List counts to build.
    pub lists: Vec<usize>,
    /// Refine depths to try on each.
    pub k_factors: Vec<f32>,
    /// Frames held out of the index and used as queries.
    pub held_out: usize,
    /// Factory template: `{lists}` is replaced by each list count.
    pub factory: String,
    pub metric: Metric,
    pub k: usize,
}

impl TuneOptions {
    /// The default sweep for `vectors` vectors of `dim` values: ¼ … 4 × √N lists (capped at
    /// N/39 so k-means has enough points), refine depths 1, 2, 4, 8.
    pub fn for_size(vectors: usize, dim: usize) -> Self {
        let root = (vectors as f64).sqrt();
        let mut lists: Vec<usize> = [0.25, 0.5, 1.0, 2.0, 4.0]
            .iter()
            .map(|m| ((m * root).round() as usize).clamp(1, (vectors / 39).max(1)))
            .collect();
        lists.dedup();
        TuneOptions {
            lists,
            k_factors: vec![1.0, 2.0, 4.0, 8.0],
            held_out: (vectors / 20).clamp(1, 1000),
            factory: format!("IVF{{lists}},PQ{}x4fs,RFlat", dim.div_ceil(2)),
            metric: Metric::L2,
            k: 8,
        }
    }
}

/// One measured setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunePoint {
    pub lists: usize,
    pub k_factor: f32,
    /// Share of the exact k nearest neighbours found.
    pub recall: f64,
    /// Median time of one block of [`BLOCK_FRAMES`] frames on the worker path.
    pub micros_per_block: f64,
}

/// Progress of a sweep, for the caller's display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TuneStep {
    ExactSearch,
    Building { lists: usize, phase: Phase },
    Measuring { lists: usize, k_factor: f32 },
}

/// Runs the sweep; `scratch` is a directory for the trial indexes.
pub fn tune(
    features: &Matrix,
    options: &TuneOptions,
    scratch: &Path,
    mut progress: impl FnMut(TuneStep),
) -> Result<Vec<TunePoint>, RetrievalError> {
    let held_out = options.held_out.min(features.rows.saturating_sub(1));
    if held_out == 0 || features.rows - held_out < options.k {
        return Err(RetrievalError::Settings("too few feature frames to tune on"));
    }
    let (base, queries) = split(features, held_out);
    progress(TuneStep::ExactSearch);
    let truth = exact_neighbours(&base, &queries, options)?;
    let mut points = Vec::new();
    for &lists in &options.lists {
        let path = scratch.join(format!("trial-{lists}.index"));
        let build = BuildOptions {
            factory: Some(options.factory.replace("{lists}", &lists.to_string())),
            metric: options.metric,
            ..BuildOptions::default()
        };
        build_index(&base, &build, &path, |phase| progress(TuneStep::Building { lists, phase }))?;
        for &k_factor in &options.k_factors {
            progress(TuneStep::Measuring { lists, k_factor });
            let settings = SearchSettings { k: options.k, nprobe: 1, k_factor: Some(k_factor) };
            let index = FeatureIndex::load(&path, settings)?;
            let recall = recall(&index, &queries, &truth, options.k)?;
            let micros_per_block = time_blocks(&index, &queries)?;
            points.push(TunePoint { lists, k_factor, recall, micros_per_block });
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(points)
}

/// The fastest setting that reaches [`TARGET_RECALL`], or else the most accurate one, with
/// the reason in words.
pub fn recommend(points: &[TunePoint]) -> Option<(TunePoint, String)> {
    let fastest = |a: &&TunePoint, b: &&TunePoint| a.micros_per_block.total_cmp(&b.micros_per_block);
    if let Some(best) = points.iter().filter(|p| p.recall >= TARGET_RECALL).min_by(fastest) {
        let reason = format!(
            "the fastest setting with recall@k ≥ {TARGET_RECALL} ({:.3}, {:.0} µs per {BLOCK_FRAMES}-frame block)",
            best.recall, best.micros_per_block
        );
        return Some((*best, reason));
    }
    let best = points.iter().max_by(|a, b| a.recall.total_cmp(&b.recall).then(fastest(b, a)))?;
    let reason = format!(
        "no setting reached recall@k {TARGET_RECALL}; this is the most accurate ({:.3}). Fewer lists raise recall at nprobe 1",
        best.recall
    );
    Some((*best, reason))
}

/// Every `rows / held_out`-th frame becomes a query, the rest the index's vectors.
fn split(features: &Matrix, held_out: usize) -> (Matrix, Matrix) {
    let step = features.rows / held_out;
    let (mut base, mut queries) = (Vec::new(), Vec::new());
    for row in 0..features.rows {
        let target = if row % step == 0 && queries.len() < held_out * features.cols { &mut queries } else { &mut base };
        target.extend_from_slice(features.row(row));
    }
    let cols = features.cols;
    (Matrix { rows: base.len() / cols, cols, data: base }, Matrix { rows: queries.len() / cols, cols, data: queries })
}

fn exact_neighbours(base: &Matrix, queries: &Matrix, options: &TuneOptions) -> Result<Vec<i64>, RetrievalError> {
    let faiss_error =
        |e: faiss::error::Error| RetrievalError::Faiss { action: "search exactly", message: e.to_string() };
    let metric = match options.metric {
        Metric::L2 => MetricType::L2,
        Metric::InnerProduct => MetricType::InnerProduct,
    };
    let mut exact = faiss::index_factory(base.cols as u32, "Flat", metric).map_err(faiss_error)?;
    exact.add(&base.data).map_err(faiss_error)?;
    let result = exact.search(&queries.data, options.k).map_err(faiss_error)?;
    Ok(result.labels.iter().map(|l| l.get().map_or(-1, |v| v as i64)).collect())
}

fn recall(index: &FeatureIndex, queries: &Matrix, truth: &[i64], k: usize) -> Result<f64, RetrievalError> {
    let (mut distances, mut labels) = (vec![0.0; queries.rows * k], vec![0; queries.rows * k]);
    index.search_into(&queries.data, &mut distances, &mut labels)?;
    let found: usize = labels
        .chunks(k)
        .zip(truth.chunks(k))
        .map(|(ours, exact)| ours.iter().filter(|l| **l >= 0 && exact.contains(l)).count())
        .sum();
    Ok(found as f64 / truth.len() as f64)
}

/// Median µs per block over the held-out frames, three passes.
fn time_blocks(index: &FeatureIndex, queries: &Matrix) -> Result<f64, RetrievalError> {
    let d = queries.cols;
    let mut retriever = Retriever::new(index, BLOCK_FRAMES);
    let mut out = vec![0.0; BLOCK_FRAMES * d];
    let ratios = [0.75; BLOCK_FRAMES];
    let mut times = Vec::new();
    for _ in 0..3 {
        for block in queries.data.chunks(BLOCK_FRAMES * d) {
            let frames = block.len() / d;
            let start = Instant::now();
            retriever.retrieve(index, block, &ratios[..frames], &mut out[..block.len()])?;
            times.push(start.elapsed().as_secs_f64() * 1e6 * BLOCK_FRAMES as f64 / frames as f64);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Writes recall against µs per block as an SVG: one line per list count, a point per refine
/// depth, the target recall as a grey line.
pub fn write_plot(points: &[TunePoint], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    crate::plot::register_font()?;
    let max_time = points.iter().map(|p| p.micros_per_block).fold(1.0, f64::max) * 1.1;
    let min_recall = points.iter().map(|p| p.recall).fold(TARGET_RECALL, f64::min).max(0.0) - 0.02;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("recall@k at nprobe 1 vs time per 25-frame block", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_time, min_recall..1.0)?;
    chart.configure_mesh().x_desc("µs per block (worker path)").y_desc("recall@k").draw()?;
    chart.draw_series(LineSeries::new([(0.0, TARGET_RECALL), (max_time, TARGET_RECALL)], BLACK.mix(0.4)))?;
    let mut lists: Vec<usize> = points.iter().map(|p| p.lists).collect();
    lists.dedup();
    for (i, list) in lists.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let series: Vec<(f64, f64)> =
            points.iter().filter(|p| p.lists == *list).map(|p| (p.micros_per_block, p.recall)).collect();
        chart
            .draw_series(LineSeries::new(series.clone(), colour.stroke_width(2)))?
            .label(format!("{list} lists"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart.draw_series(series.iter().map(|&(x, y)| Circle::new((x, y), 4, colour.filled())))?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}
