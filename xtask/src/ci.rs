//! `cargo xtask ci`: the fast checks expected before a commit.

use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip the tests (formatting, lints and docs only).
    #[arg(long)]
    no_test: bool,
}

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("could not run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs fmt --check, clippy with warnings denied, the tests (again with
/// `TEGAKI_NO_SIMD=1` for the kernel crates) and rustdoc.
pub fn run(args: Args) -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    if !args.no_test {
        cargo(&["test", "--workspace"], &[])?;
        // The kernels' portable fallbacks (what a CPU without AVX2/AVX-512
        // runs), on the crates that have SIMD paths.
        cargo(
            &[
                "test",
                "-p",
                "tegaki-tensor",
                "-p",
                "tegaki-nn",
                "-p",
                "tegaki-optim",
                "-p",
                "tegaki-data",
                "--lib",
            ],
            &[("TEGAKI_NO_SIMD", "1")],
        )?;
    }
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("ci: all checks passed");
    Ok(())
}
