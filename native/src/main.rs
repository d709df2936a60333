//! `bilevel`: the command-line front end. Every failure ends in one line on stderr and a
//! non-zero exit; results are streamed to disk as they are produced.

mod bench;
mod common;
mod hypergrad;
mod toy;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bilevel", version, about = "Bilevel optimisation: hypergradients on CPU and GPU (wgpu)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-feature ridge regression on synthetic data, with the exact hypergradient as reference.
    Toy(toy::ToyArgs),
    /// The hypergradient of your own svmlight data at a given λ (one JSON object).
    Hypergrad(hypergrad::HypergradArgs),
    /// Time outer iterations at the real problems' shapes (synthetic data), per backend.
    Bench(bench::BenchArgs),
    /// List the GPU adapters wgpu finds.
    Devices,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's usage block, folded into one line.
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("{}", lines.join("; "));
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Toy(args) => toy::run(args),
        Command::Hypergrad(args) => hypergrad::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Devices => devices(),
    };
    if let Err(e) = result {
        // One line: the error and its causes, joined.
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

fn devices() -> anyhow::Result<()> {
    let adapters = pollster::block_on(bilevel_core::gpu::list_adapters());
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found (on Debian without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)");
    }
    for a in adapters {
        println!("{}", serde_json::to_string(&a)?);
    }
    Ok(())
}
