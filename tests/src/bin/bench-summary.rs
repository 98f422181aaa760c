//! `bench-summary FILE`: the table `make bench` ends with. Every benchmark appends its figures to FILE
//! (`edgeseal_tests::bench::Figure`, one JSON object per line, the file named by
//! `EDGESEAL_BENCH_SUMMARY`); this prints them as one Markdown table, in the order they were measured,
//! and how many targets were met. It exits 0 either way: a missed target is a finding, not a failure.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use edgeseal_tests::bench::Figure;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: bench-summary FILE (the file make bench collects figures in)");
        return ExitCode::from(64);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bench-summary: cannot read {}: {e}", std::path::Path::new(&path).display());
            return ExitCode::from(66);
        }
    };
    let mut figures = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<Figure>(line) {
            Ok(figure) => figures.push(figure),
            Err(e) => eprintln!("bench-summary: line {} is not a figure ({e}); skipped", n + 1),
        }
    }
    println!();
    println!("## make bench: every figure beside its anchor from the same run");
    println!();
    println!("| bench | figure | value | anchor (same run) | ratio | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let cell = |text: &str| if text.is_empty() { "—".to_string() } else { text.replace('|', "/") };
    for f in &figures {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.bench,
            cell(&f.figure),
            cell(&f.value),
            cell(&f.anchor),
            cell(&f.ratio),
            cell(&f.target),
            if f.met { "MET" } else { "**MISSED**" }
        );
    }
    let met = figures.iter().filter(|f| f.met).count();
    println!();
    println!("{met} of {} targets met.", figures.len());
    ExitCode::SUCCESS
}
