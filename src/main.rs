//! `bitfusion`: the command-line entry point. A thin layer over the library
//! crates: it parses arguments, calls library functions, and prints one-line
//! errors with a non-zero exit code.

mod commands;
mod pipeline;
mod search_cmd;
mod study;
mod supernet;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "bitfusion", version, about = "Bit Fusion accelerator simulator with a hardware-aware search front end")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Hardware selection shared by every command that simulates.
#[derive(clap::Args, Clone)]
pub struct HwArgs {
    /// Hardware config: a TOML file, or the name of a shipped one (bitfusion-isca2018, bitfusion-8x8, bitfusion-stripes,
    /// bitfusion-edge, bitfusion-cloud).
    #[arg(long, default_value = "bitfusion-isca2018")]
    hw: String,
    /// Override any config key, e.g. --set array.rows=32 (repeatable; validated like the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// What to simulate and how.
#[derive(clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    hw: HwArgs,
    /// Workload file, format detected: topology CSV (name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col),
    /// SCALE-Sim conv or GEMM CSV, once-for-all net.config JSON (resolution: --resolution, else a run.config beside it, else 224),
    /// or an ONNX model (FILE.onnx).
    #[arg(long, conflicts_with_all = ["network", "onnx"], required_unless_present_any = ["network", "onnx"])]
    layers: Option<PathBuf>,
    /// An ONNX model, shapes only: its Conv, Gemm and MatMul nodes are the layers; symbolic
    /// dimensions take --batch, layers without QuantizeLinear/DequantizeLinear or ZigZag's
    /// weight_size/act_size take --w-bits/--a-bits (default 8).
    #[arg(long, conflicts_with = "network")]
    onnx: Option<PathBuf>,
    /// A built-in network (see `bitfusion networks`).
    #[arg(long)]
    network: Option<String>,
    /// Cost model: cycle or reference (default: the config's [models] cost).
    #[arg(long)]
    model: Option<String>,
    /// Mapping objective of the cycle model: cycles, energy or edp.
    #[arg(long, default_value = "cycles")]
    objective: String,
    /// Batch size for every layer.
    #[arg(long)]
    batch: Option<u32>,
    /// Weight bits for every layer.
    #[arg(long)]
    w_bits: Option<u32>,
    /// Activation bits for every layer.
    #[arg(long)]
    a_bits: Option<u32>,
    /// Input resolution, in pixels (square), of a once-for-all net.config workload (default: the
    /// image_size of a run.config beside it, else 224); other formats give their own sizes and ignore it.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..))]
    resolution: Option<u32>,
    /// Write results to FILE.csv or FILE.json instead of printing a table.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also step every cycle of the array and memory (cycle model, small arrays and layers), compute
    /// the layers' integer outputs, and check both against the fast engine and a direct convolution.
    #[arg(long)]
    detailed: bool,
    /// Seed of the detailed mode's random weights and activations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Detailed mode, one layer: take its weights and activations from this JSON file
    /// ({"inputs": [NHWC...], "weights": [[out][ky][kx][in/groups]...]}).
    #[arg(long, requires = "detailed")]
    operands: Option<PathBuf>,
    /// Detailed mode: write the layers' integer outputs (NHWC) to this JSON file.
    #[arg(long, requires = "detailed")]
    outputs: Option<PathBuf>,
    /// Write the tile schedule (array and DMA lanes) as a Chrome trace (cycle model).
    #[arg(long)]
    trace: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a network, a topology CSV or an ONNX model, one row per layer plus a total.
    Simulate(Box<SimulateArgs>),
    /// List the built-in networks, or print one (or a workload file of any format, ONNX included) as a topology CSV.
    Networks {
        /// Print this network's (or workload file's) layers as a topology CSV.
        name: Option<String>,
        /// Input resolution, in pixels (square), of a once-for-all net.config (default: the
        /// image_size of a run.config beside it, else 224); other formats ignore it.
        #[arg(long, value_name = "PX", requires = "name", value_parser = clap::value_parser!(u32).range(1..))]
        resolution: Option<u32>,
    },
    /// Show a hardware config after validation, with its area and SRAM figures.
    Hw {
        #[command(flatten)]
        hw: HwArgs,
    },
    /// Replay the RTL's golden files through the functional models (exit 0 only if all match).
    Validate {
        #[command(subcommand)]
        what: ValidateCommand,
    },
    /// Run a design-space sweep (TOML spec) into DIR: results.csv, pareto.csv, layers.csv, points.csv.
    /// Rows already in DIR/results.csv are skipped, so an interrupted sweep resumes.
    Sweep {
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Run only shard i of n (1-based), e.g. for a cluster job array; combine with `bitfusion merge`.
        #[arg(long)]
        shard: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Merge sweep (shard) directories into one.
    Merge {
        dirs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a search space (preset or file) and print random architectures of it.
    Space {
        space: String,
        /// Print this many seeded random architectures in canonical form.
        #[arg(long, default_value_t = 0)]
        random: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Latency/energy lookup tables of a search space's layers.
    Lut {
        #[command(subcommand)]
        what: LutCommand,
    },
    /// Architectures in the anchors' formats: export to APQ's `arch` JSON or OFA's dict, import APQ's.
    Arch {
        #[command(subcommand)]
        what: ArchCommand,
    },
    /// Once-for-all supernet: train it, sample (architecture, bits, accuracy) pairs, measure subnets.
    Supernet {
        #[command(subcommand)]
        what: supernet::SupernetCommand,
    },
    /// Accuracy predictors: train (fp32, quantization-aware, transferred) and the transfer experiment.
    Predictor {
        #[command(subcommand)]
        what: search_cmd::PredictorCommand,
    },
    /// Hardware-aware search: the best predicted accuracy under a latency/energy budget from the
    /// LUT (evolution), optionally the whole Pareto front and every baseline method.
    Search(Box<search_cmd::SearchArgs>),
    /// The whole pipeline on an embedded default (micro space, Fashion-MNIST, the paper's hwconfig):
    /// LUT, supernet, pairs, predictors, searches, baselines, verification, plots and report.md.
    /// Every stage is cached in OUT and skipped when its inputs are unchanged.
    Run(Box<pipeline::RunArgs>),
    /// Studies across hardware configs: `edge-cloud` searches each config at a comparable
    /// latency budget and places each winner's layers on that config's roofline.
    Study {
        #[command(subcommand)]
        what: study::StudyCommand,
    },
    /// Draw charts (PNG and SVG).
    Plot {
        #[command(subcommand)]
        what: PlotCommand,
    },
    /// The paper's Eyeriss comparison: speedup and energy reduction per benchmark and geomeans,
    /// with the reference model (the paper's numbers) and the cycle model beside it.
    Paper {
        #[command(flatten)]
        hw: HwArgs,
        /// Also write the comparison as CSV and charts into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LutCommand {
    /// Simulate every distinct layer any architecture of the space can contain (resumes an
    /// interrupted build from OUT.partial).
    Build {
        /// A preset space (apq, apq-wide-bits, micro) or a space TOML file.
        #[arg(long)]
        space: String,
        #[command(flatten)]
        hw: HwArgs,
        /// Cost model: cycle or reference (default: the config's [models] cost).
        #[arg(long)]
        model: Option<String>,
        /// Mapping objective of the cycle model: cycles, energy or edp.
        #[arg(long, default_value = "cycles")]
        objective: String,
        /// Batch of every layer (default: the config's [workload] batch, 1 unless it says otherwise).
        #[arg(long)]
        batch: Option<u32>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the LUT in our CSV (one row per entry), APQ's LUT dict or OFA's latency-table YAML.
    ///
    /// `apq`: APQ's `lut/BitFusion_new.b1.dict` (JSON): "(cin, cout, in, k, s, pad, groups)-W{w}A{a}"
    /// -> {"energy": mJ, "latency": ms}, plus "head" and "tail"; one entry per key (the one stored at
    /// the layer's own activation bits). `ofa`: OFA's `{R}_lookup_table.yaml` (written as JSON, valid
    /// YAML): block keys `expanded_conv-input:HxWxC-output:HxWxC-expand:MID-kernel:K-stride:S-idskip:I`
    /// plus `Conv`, `Conv_1`, `Logits`, each -> {count, mean (ms), std}, every searchable layer at
    /// --bits; when --out is a directory the file is OUT/{R}_lookup_table.yaml.
    Export {
        lut: PathBuf,
        /// csv, apq or ofa.
        #[arg(long, default_value = "csv")]
        format: String,
        /// The file to write (for ofa also a directory).
        #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
        out: Option<PathBuf>,
        /// Same as --format csv --out FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "format")]
        csv: Option<PathBuf>,
        /// ofa: the weight and activation bits of every searchable layer (OFA's tables have no bit axis).
        #[arg(long, default_value = "8,8", value_name = "W,A")]
        bits: String,
    },
    /// Per-layer and total latency/energy of an architecture (canonical text or JSON).
    Query {
        lut: PathBuf,
        #[arg(long)]
        arch: String,
        /// Refuse the LUT unless it was built for this hardware config.
        #[arg(long)]
        hw: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Simulate random whole architectures and report the LUT's error against them.
    Check {
        lut: PathBuf,
        #[arg(long, default_value_t = 20)]
        samples: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Compare with APQ's LUT (ratios ours/theirs, pointwise and depthwise): THEIRS is APQ's
    /// original dict (`BitFusion_new.b1.dict`) or its flat CSV, told apart by content.
    Diff { ours: PathBuf, theirs: PathBuf },
}

#[derive(Subcommand)]
enum ArchCommand {
    /// Write an architecture as APQ's `arch` JSON ([{wid, ks, e, d}, {pw_w_bits_setting, ...}], as
    /// APQ's search.py writes it) or OFA's dict {ks, e (mid/cin), d, r}.
    Export {
        /// Canonical text, architecture JSON, a `best.json`, or a file holding one of them.
        arch: String,
        /// The architecture's space: a preset (apq, apq-wide-bits, micro) or a space TOML file.
        #[arg(long)]
        space: String,
        /// apq or ofa.
        #[arg(long)]
        format: String,
        /// Write here (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Read APQ's `arch` JSON (exps/NAME/arch) into our canonical text.
    Import {
        file: PathBuf,
        #[arg(long)]
        space: String,
    },
}

#[derive(Subcommand)]
enum PlotCommand {
    /// Heatmaps, area-latency/energy Pareto fronts, energy breakdowns and rooflines of a sweep.
    Sweep {
        dir: PathBuf,
        /// Swept key on the heatmaps' x axis (default: the first).
        #[arg(long)]
        x: Option<String>,
        /// Swept key on the heatmaps' y axis (default: the second).
        #[arg(long)]
        y: Option<String>,
        /// Workload of the heatmaps, fronts and breakdowns (default: the first).
        #[arg(long)]
        workload: Option<String>,
        /// Precision of the heatmaps, fronts and breakdowns, e.g. native or 4x4 (default: the first).
        #[arg(long)]
        precision: Option<String>,
    },
    /// Accuracy/latency and accuracy/energy fronts of a search directory (every method its own
    /// series, predicted and measured points), the winner's per-layer bits and channels, and the
    /// predictor-transfer curve.
    Pareto { dir: PathBuf },
    /// The three objectives of a search or run directory: latency against energy of the NSGA-II
    /// front coloured by predicted error, and the error/latency and error/energy fronts, every
    /// method's winners marked (objectives.png and .svg in DIR).
    Objectives { dir: PathBuf },
}

#[derive(Subcommand)]
enum ValidateCommand {
    /// Fusion-unit vectors (the format of rtl/fusion_unit_vectors.csv).
    FusionUnit { vectors: PathBuf },
    /// Systolic-array timing cases (the format of rtl/array_timing.csv).
    ArrayTiming {
        cases: PathBuf,
        /// Seed of the random operands.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Simulate(args) => commands::simulate(&args),
        Command::Networks { name, resolution } => commands::networks(name.as_deref(), resolution).map(|_| true),
        Command::Hw { hw } => commands::show_hw(&hw).map(|_| true),
        Command::Validate { what } => match what {
            ValidateCommand::FusionUnit { vectors } => commands::validate_fusion_unit(&vectors),
            ValidateCommand::ArrayTiming { cases, seed } => commands::validate_array_timing(&cases, seed),
        },
        Command::Sweep { spec, out, shard, threads } => commands::sweep(&spec, &out, shard.as_deref(), threads).map(|_| true),
        Command::Merge { dirs, out } => commands::merge(&dirs, &out).map(|_| true),
        Command::Plot { what: PlotCommand::Sweep { dir, x, y, workload, precision } } => {
            commands::plot_sweep(&dir, bitfusion_plots::SweepPlotOptions { x, y, workload, precision }).map(|_| true)
        }
        Command::Paper { hw, out } => commands::paper(&hw, out.as_deref()).map(|_| true),
        Command::Arch { what } => match what {
            ArchCommand::Export { arch, space, format, out } => commands::arch_export(&arch, &space, &format, out.as_deref()).map(|_| true),
            ArchCommand::Import { file, space } => commands::arch_import(&file, &space).map(|_| true),
        },
        Command::Space { space, random, seed } => commands::space(&space, random, seed).map(|_| true),
        Command::Supernet { what } => supernet::run(what),
        Command::Predictor { what } => search_cmd::run_predictor(what),
        Command::Search(args) => search_cmd::search(&args),
        Command::Run(args) => pipeline::run(&args),
        Command::Study { what } => study::run(what),
        Command::Plot { what: PlotCommand::Pareto { dir } } => {
            for f in search_cmd::plot_pareto(&dir)? {
                println!("wrote {}", f.display());
            }
            Ok(true)
        }
        Command::Plot { what: PlotCommand::Objectives { dir } } => {
            for f in search_cmd::plot_objectives(&dir)? {
                println!("wrote {}", f.display());
            }
            Ok(true)
        }
        Command::Lut { what } => match what {
            LutCommand::Build { space, hw, model, objective, batch, out } => {
                commands::lut_build(&space, &hw, model.as_deref(), &objective, batch, &out).map(|_| true)
            }
            LutCommand::Export { lut, format, out, csv, bits } => {
                let (format, out) = match (csv, out) {
                    (Some(csv), _) => ("csv".to_string(), csv),
                    (None, Some(out)) => (format, out),
                    (None, None) => unreachable!("clap requires --out unless --csv"),
                };
                commands::lut_export(&lut, &format, &out, &bits).map(|_| true)
            }
            LutCommand::Query { lut, arch, hw, set } => commands::lut_query(&lut, &arch, hw.as_deref(), &set).map(|_| true),
            LutCommand::Check { lut, samples, seed } => commands::lut_check(&lut, samples, seed),
            LutCommand::Diff { ours, theirs } => commands::lut_diff(&ours, &theirs).map(|_| true),
        },
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Writing to a closed pipe (`bitfusion space apq --random 1000 | head -1`) ends the process
/// quietly, as Unix tools do, instead of `println!` panicking on `EPIPE`: Rust starts programs
/// with `SIGPIPE` ignored, so put the default action back.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; `signal` with
    // `SIG_DFL` only resets the disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Help and version go to stdout with exit 0; every argument error becomes the one-line
/// `error: ...` message with exit 1 that the rest of the CLI uses, keeping clap's tip (a
/// similar argument, the expected values) and pointing at `--help` instead of printing usage.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    // "not provided:" is followed by its list: join with a space there, "; " between sentences.
    let mut message = String::new();
    for p in parts {
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(p);
    }
    eprintln!("error: {} (see --help)", one_line(&message));
    ExitCode::FAILURE
}

/// A message on one line: line breaks become spaces and other control characters from the
/// input (escape sequences, NULs) are shown escaped, so a hostile file name or cell cannot
/// rewrite the terminal.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_joined() {
        assert_eq!(one_line("bad \u{1b}[31mred\u{0}\nnext"), "bad \\u{1b}[31mred\\u{0} next");
    }
}
