//! `bitfusion`: the command-line entry point. A thin layer over the library
//! crates: it parses arguments, calls library functions, and prints one-line
//! errors with a non-zero exit code.

mod commands;

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
    /// Hardware config: a TOML file, or the name of a shipped one (bitfusion-isca2018, bitfusion-8x8, bitfusion-stripes).
    #[arg(long, default_value = "bitfusion-isca2018")]
    hw: String,
    /// Override any config key, e.g. --set array.rows=32 (repeatable; validated like the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a network or a topology CSV, one row per layer plus a total.
    Simulate {
        #[command(flatten)]
        hw: HwArgs,
        /// Topology CSV (name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col).
        #[arg(long, conflicts_with = "network", required_unless_present = "network")]
        layers: Option<PathBuf>,
        /// A built-in network (see `bitfusion networks`).
        #[arg(long)]
        network: Option<String>,
        /// Cost model (default: the config's [models] cost).
        #[arg(long)]
        model: Option<String>,
        /// Batch size for every layer.
        #[arg(long)]
        batch: Option<u32>,
        /// Weight bits for every layer.
        #[arg(long)]
        w_bits: Option<u32>,
        /// Activation bits for every layer.
        #[arg(long)]
        a_bits: Option<u32>,
        /// Write results to FILE.csv or FILE.json instead of printing a table.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the built-in networks, or print one as a topology CSV.
    Networks {
        /// Print this network's layers as a topology CSV.
        name: Option<String>,
    },
    /// Show a hardware config after validation, with its area and SRAM figures.
    Hw {
        #[command(flatten)]
        hw: HwArgs,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate { hw, layers, network, model, batch, w_bits, a_bits, out } => {
            commands::simulate(&hw, layers.as_deref(), network.as_deref(), model.as_deref(), batch, w_bits, a_bits, out.as_deref())
        }
        Command::Networks { name } => commands::networks(name.as_deref()),
        Command::Hw { hw } => commands::show_hw(&hw),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
