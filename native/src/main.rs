//! `bilevel`: the command-line front end. Every failure ends in one line on stderr and a
//! non-zero exit; results are streamed to disk as they are produced.

mod bench;
mod check;
mod common;
mod data;
mod experiments;
mod hypergrad;
mod meta;
mod plot;
mod reproduce;
mod run;
mod toy;
mod web;

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
    /// MNIST data hyper-cleaning (the reference's mnist_exp.py): one weight per training sample.
    Hyperclean(experiments::HypercleanArgs),
    /// 20 Newsgroups with one L2 hyperparameter per feature (the reference's l2reg_on_twentynews.py).
    L2reg(experiments::L2regArgs),
    /// ijcnn1: binary logistic regression with one L2 hyperparameter per feature.
    Ijcnn1(experiments::Ijcnn1Args),
    /// The hypergradient of your own svmlight data at a given λ (one JSON object).
    Hypergrad(hypergrad::HypergradArgs),
    /// Few-shot meta-learning on Omniglot: ITD-BiO, FO-ITD-BiO, ANIL, MAML (JSON lines per iteration).
    Meta(meta::MetaArgs),
    /// Check every oracle of the CLI's problems against finite differences (small synthetic data).
    Check(check::CheckArgs),
    /// Time outer iterations at the real problems' shapes (synthetic data), per backend.
    Bench(bench::BenchArgs),
    /// The reference's figure set (20news, MNIST), with figures and a markdown table.
    Reproduce(reproduce::ReproduceArgs),
    /// Test loss and accuracy against time, one line per results file (.png or .svg).
    Plot(plot::PlotArgs),
    /// The web page's landscape (two-feature ridge): Φ on a λ grid and the estimators at a point (JSON).
    Landscape(web::LandscapeArgs),
    /// Write the web page's MNIST subset (build-time asset; raw pixels and labels).
    MnistSubset(web::MnistSubsetArgs),
    /// List the GPU adapters wgpu finds.
    Devices,
    /// Shapes, non-zeros and class counts of a real data set's splits (mnist, 20news, ijcnn1, omniglot), as one JSON object.
    DataInfo(data::DataInfoArgs),
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
        Command::Hyperclean(args) => experiments::hyperclean(args),
        Command::L2reg(args) => experiments::l2reg(args),
        Command::Ijcnn1(args) => experiments::ijcnn1(args),
        Command::Meta(args) => meta::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Landscape(args) => web::landscape(args),
        Command::MnistSubset(args) => web::mnist_subset(args),
        Command::Devices => devices(),
        Command::DataInfo(args) => data::run(args),
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
