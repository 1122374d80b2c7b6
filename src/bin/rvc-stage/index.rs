//! `rvc-stage index …` and `rvc-stage retrieve`: describe, build, convert and tune feature
//! indexes, and run the worker's retrieval path offline. Main thread.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rvc_stage::npy::{read_matrix, write_matrix, Matrix};
use rvc_stage::retrieval::build::{build_index, factory_string, read_feature_files, vectors_of, BuildOptions, Phase};
use rvc_stage::retrieval::tune::{recommend, tune as sweep, write_plot, TuneOptions, TuneStep, BLOCK_FRAMES};
use rvc_stage::retrieval::{inspect, FeatureIndex, IndexLayout, Metric, Retriever, SearchSettings, DEFAULT_K_FACTOR};

/// How an index is trained.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// Output `.index` file (faiss format; Python faiss and RVC read it).
    #[arg(short, long)]
    output: PathBuf,
    /// Inverted lists. Default √N (capped at N/39): at nprobe = 1, fewer and longer lists find
    /// more of the true neighbours, and the fast-scan kernel makes long lists cheap.
    #[arg(long)]
    n_ivf: Option<usize>,
    /// A faiss factory string instead of `IVF{n},PQ{d/2}x4fs,RFlat` (e.g. `IVF256,Flat`).
    #[arg(long)]
    factory: Option<String>,
    /// Distance: l2 (RVC's choice) or ip.
    #[arg(long, default_value = "l2", value_parser = parse_metric)]
    metric: Metric,
    /// Refine depth stored in the file: exact distances are computed for k·k_factor fast-scan
    /// candidates. faiss's default 1 only re-sorts; 4 restores recall at little cost.
    #[arg(long, default_value_t = DEFAULT_K_FACTOR)]
    k_factor: f32,
}

fn parse_metric(text: &str) -> Result<Metric, String> {
    match text.to_ascii_lowercase().as_str() {
        "l2" => Ok(Metric::L2),
        "ip" | "inner-product" => Ok(Metric::InnerProduct),
        other => Err(format!("unknown metric {other:?}: use l2 or ip")),
    }
}

impl BuildArgs {
    fn options(&self, metric: Metric) -> BuildOptions {
        BuildOptions {
            factory: self.factory.clone(),
            n_ivf: self.n_ivf,
            metric,
            k_factor: self.k_factor,
            ..BuildOptions::default()
        }
    }
}

/// Search settings shared by `retrieve` and `tune`.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// Neighbours per frame.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Lists probed per frame; RVC uses 1, and the real-time budget assumes it.
    #[arg(long, default_value_t = 1)]
    nprobe: usize,
    /// Refine depth for fast-scan + RFlat indexes (default 4; the file's value is usually 1).
    #[arg(long)]
    k_factor: Option<f32>,
}

impl SearchArgs {
    fn settings(&self) -> SearchSettings {
        SearchSettings { k: self.k, nprobe: self.nprobe, k_factor: Some(self.k_factor.unwrap_or(DEFAULT_K_FACTOR)) }
    }
}

pub fn info(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let summary = inspect(&bytes).with_context(|| format!("{} is not a usable index", path.display()))?;
    let metric = match summary.metric {
        Metric::L2 => "L2 distance",
        Metric::InnerProduct => "inner product",
    };
    let (kind, code_bytes) = match summary.layout {
        IndexLayout::IvfFlat => ("IVF-Flat (\"IwFl\", RVC's own layout)".to_string(), summary.dim * 4),
        IndexLayout::IvfPqFastScanRefineFlat { pq_m, by_residual, k_factor } => (
            format!(
                "IVF-PQ fast-scan with flat refine (\"IxRF\" over \"IwPf\"): PQ {pq_m}x4 bits{}, refine k_factor {k_factor}",
                if by_residual { " on residuals" } else { "" }
            ),
            pq_m.div_ceil(2) + summary.dim * 4,
        ),
    };
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    let memory = summary.vectors * (code_bytes + 8) + summary.nlist * summary.dim * 4;
    println!("{}", path.display());
    println!("  type        {kind}");
    println!("  vectors     {} of dimension {}, {metric}", summary.vectors, summary.dim);
    println!("  lists       {}, nprobe {} as saved", summary.nlist, summary.nprobe);
    println!("  code size   {code_bytes} bytes per vector (+ 8-byte id)");
    println!(
        "  file        {:.1} MiB; about {:.1} MiB in memory once loaded",
        mib(bytes.len() as f64),
        mib(memory as f64)
    );
    Ok(())
}

pub fn build(inputs: &[PathBuf], args: &BuildArgs) -> Result<()> {
    ensure!(!inputs.is_empty(), "name at least one .npy file or directory of them");
    let features = read_feature_files(inputs)?;
    ensure!(features.rows > 0, "no feature frames found in {inputs:?}");
    println!("{} feature vectors of dimension {}", features.rows, features.cols);
    train_and_write(&features, &args.options(args.metric), &args.output)
}

pub fn convert(input: &Path, args: &BuildArgs) -> Result<()> {
    let old = FeatureIndex::load(input, SearchSettings { k_factor: None, ..SearchSettings::default() })?;
    let vectors = vectors_of(&old)?;
    println!("{} vectors of dimension {} taken from {}", vectors.rows, vectors.cols, input.display());
    train_and_write(&vectors, &args.options(old.summary().metric), &args.output)
}

fn train_and_write(features: &Matrix, options: &BuildOptions, output: &Path) -> Result<()> {
    let factory = factory_string(options, features.rows, features.cols);
    let bar = ProgressBar::new(features.rows as u64)
        .with_style(ProgressStyle::with_template("{spinner} {msg} {bar:30} {pos}/{len} {elapsed}")?);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    build_index(features, options, output, |phase| match phase {
        Phase::Training => bar.set_message(format!("training {factory}")),
        Phase::Adding { done, .. } => {
            bar.set_message("adding vectors");
            bar.set_position(done as u64);
        }
        Phase::Writing => bar.set_message("writing"),
    })?;
    bar.finish_and_clear();
    println!("wrote {} ({factory}, nprobe 1, k_factor {})", output.display(), options.k_factor);
    Ok(())
}

/// `retrieve`: the worker's retrieval and blend, on a whole feature file, in worker-sized blocks.
pub fn retrieve(
    index: &Path,
    features: &Path,
    ratio: f32,
    output: &Path,
    block: usize,
    search: &SearchArgs,
) -> Result<()> {
    ensure!((0.0..=1.0).contains(&ratio), "--ratio must be within 0-1, got {ratio}");
    ensure!(block > 0, "--block-frames must be at least 1");
    let index = FeatureIndex::load(index, search.settings())?;
    let frames = read_matrix(features)?;
    ensure!(
        frames.cols == index.dim(),
        "{} has {} values per frame but the index holds {}-dimensional vectors",
        features.display(),
        frames.cols,
        index.dim()
    );
    let mut retriever = Retriever::new(&index, block);
    let mut out = Matrix { rows: frames.rows, cols: frames.cols, data: vec![0.0; frames.data.len()] };
    let ratios = vec![ratio; block];
    for (input, output) in frames.data.chunks(block * frames.cols).zip(out.data.chunks_mut(block * frames.cols)) {
        retriever.retrieve(&index, input, &ratios[..input.len() / frames.cols], output)?;
    }
    write_matrix(output, &out)?;
    println!("blended {} frames with ratio {ratio} → {}", frames.rows, output.display());
    Ok(())
}

/// What `index tune` sweeps.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// List counts to try, comma-separated (default ¼, ½, 1, 2 and 4 × √N).
    #[arg(long, value_delimiter = ',')]
    lists: Option<Vec<usize>>,
    /// Refine depths to try on each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    k_factors: Vec<f32>,
    /// Frames held out of the trial indexes and searched (default N/20, at most 1000).
    #[arg(long)]
    held_out: Option<usize>,
    /// Where to write the recall-vs-time plot.
    #[arg(long, default_value = "index-tune.svg")]
    plot: PathBuf,
    /// Distance for feature files: l2 or ip (an index keeps its own).
    #[arg(long, default_value = "l2", value_parser = parse_metric)]
    metric: Metric,
}

pub fn tune(inputs: &[PathBuf], args: &TuneArgs) -> Result<()> {
    ensure!(!inputs.is_empty(), "name an .index file, or .npy files or directories of them");
    let (features, metric) = match inputs {
        [single] if single.extension().is_some_and(|e| e == "index") => {
            let index = FeatureIndex::load(single, SearchSettings { k_factor: None, ..SearchSettings::default() })?;
            (vectors_of(&index)?, index.summary().metric)
        }
        _ => (read_feature_files(inputs)?, args.metric),
    };
    let mut options = TuneOptions::for_size(features.rows, features.cols);
    options.metric = metric;
    options.k_factors = args.k_factors.clone();
    if let Some(lists) = &args.lists {
        options.lists = lists.clone();
    }
    if let Some(held_out) = args.held_out {
        options.held_out = held_out;
    }
    println!(
        "{} vectors of dimension {}; {} held-out frames searched at nprobe 1, k {}",
        features.rows, features.cols, options.held_out, options.k
    );
    let scratch = std::env::temp_dir().join(format!("rvc-stage-tune-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let bar = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let points = sweep(&features, &options, &scratch, |step| {
        bar.set_message(match step {
            TuneStep::ExactSearch => "exact search for the held-out frames".to_string(),
            TuneStep::Building { lists, phase: Phase::Adding { done, total } } => {
                format!("{lists} lists: adding vectors {done}/{total}")
            }
            TuneStep::Building { lists, .. } => format!("{lists} lists: training"),
            TuneStep::Measuring { lists, k_factor } => format!("{lists} lists: measuring k_factor {k_factor}"),
        })
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    let points = points?;
    println!();
    println!("| lists | k_factor | recall@{} | µs per {BLOCK_FRAMES}-frame block |", options.k);
    println!("|---:|---:|---:|---:|");
    for point in &points {
        println!("| {} | {} | {:.3} | {:.0} |", point.lists, point.k_factor, point.recall, point.micros_per_block);
    }
    write_plot(&points, &args.plot).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.plot.display()))?;
    println!();
    println!("plot: {}", args.plot.display());
    if let Some((best, reason)) = recommend(&points) {
        println!("recommended: {} lists, k_factor {} — {reason}", best.lists, best.k_factor);
        println!(
            "  rvc-stage index build <features> -o model.index --n-ivf {} --k-factor {}",
            best.lists, best.k_factor
        );
    }
    Ok(())
}
