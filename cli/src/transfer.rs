//! `export`, `import` and `migrate`: documents out of a backend as JSON
//! lines, back in, or straight from one backend to another.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;
use persistence_transfer::{ImportMode, MigrateOptions};

use persistence_cli::report::{right, table, thousands};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A namespace to export (repeatable; default: every namespace).
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Where to write the JSON lines (`-`: standard output).
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The JSON lines `export` wrote (`-`: standard input).
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// What to do with a key that exists: `create` leaves it and reports a
    /// conflict, `upsert` replaces it.
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Create,
    Upsert,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The source's settings file (TOML, as --config; no TA_* variables
    /// apply to either side).
    #[arg(long, value_name = "CONFIG")]
    from: PathBuf,
    /// The target's settings file.
    #[arg(long, value_name = "CONFIG")]
    to: PathBuf,
    /// A namespace to copy (repeatable; default: every one the source lists).
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Read and count the source; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where progress is kept, so a run that was interrupted resumes after
    /// the last page it copied (default: `ta-migrate.checkpoint.json` in
    /// the working directory; removed once the migration is verified).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "ta-migrate.checkpoint.json"
    )]
    checkpoint: PathBuf,
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Progress on stderr when a person watches it: a line rewritten in place.
fn progress(what: &'static str) -> impl FnMut(u64) {
    let tty = std::io::stderr().is_terminal();
    move |n| {
        if tty {
            eprint!("\r{what} {} documents", thousands(n as f64));
        }
    }
}

pub async fn export(
    args: &ExportArgs,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut settings = settings.clone();
    settings.fallback = FallbackPolicy::Fail; // never export an empty fallback
    let opened = factory.open(&settings).await?;
    let backend = opened.backend;
    let path = shown(&args.out);
    let (mut out, name): (Box<dyn Write>, &str) = if path == "-" {
        (Box::new(BufWriter::new(std::io::stdout().lock())), "stdout")
    } else {
        let file = std::fs::File::create(&args.out).map_err(|e| format!("{path}: {e}"))?;
        (Box::new(BufWriter::new(file)), &path)
    };
    let report = persistence_transfer::export(
        &*backend,
        &args.namespaces,
        &mut out,
        name,
        progress("exported"),
    )
    .await?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let total: u64 = report.documents.values().sum();
    // the summary goes where it does not mix with the documents
    let summary = if json {
        serde_json::to_string(&serde_json::json!({
            "backend": backend.name(), "out": path, "documents": report.documents,
            "total": total, "corrupted": report.corrupted,
        }))?
    } else {
        let mut t = table(&["namespace", "documents"]);
        for (ns, n) in &report.documents {
            t.add_row(vec![ns.clone().into(), right(n)]);
        }
        format!(
            "exported {total} documents from {} to {path} ({} not JSON, exported as raw bytes and flagged)\n{t}",
            backend.name(),
            report.corrupted
        )
    };
    if path == "-" {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn import(
    args: &ImportArgs,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut settings = settings.clone();
    settings.fallback = FallbackPolicy::Fail;
    let backend = factory.open(&settings).await?.backend;
    let mode = match args.mode {
        Mode::Create => ImportMode::Create,
        Mode::Upsert => ImportMode::Upsert,
    };
    let path = shown(&args.input);
    let (input, name): (Box<dyn BufRead>, &str) = if path == "-" {
        (Box::new(std::io::stdin().lock()), "stdin")
    } else {
        let file = std::fs::File::open(&args.input).map_err(|e| format!("{path}: {e}"))?;
        (Box::new(BufReader::new(file)), &path)
    };
    let report =
        persistence_transfer::import(&*backend, input, name, mode, progress("imported")).await?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let total: u64 = report.imported.values().sum();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "imported {total} documents into {} from {path}; {} conflicts (keys that exist, left as they were), {} expired, {} bad lines",
            backend.name(),
            report.conflicts.len(),
            report.expired,
            report.error_count
        );
        for c in report.conflicts.iter().take(20) {
            println!("  conflict: {c}");
        }
        if report.conflicts.len() > 20 {
            println!(
                "  ... and {} more (--json lists them all)",
                report.conflicts.len() - 20
            );
        }
        for e in &report.errors {
            println!("  {e}");
        }
    }
    Ok(if report.conflicts.is_empty() && report.error_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The settings in `path` alone (no variables), never falling back.
fn side(factory: &Factory, path: &Path) -> Result<Settings, persistence_core::Error> {
    let mut s = factory.settings_from_sources(Some(path), Vec::new())?;
    s.fallback = FallbackPolicy::Fail;
    Ok(s)
}

pub async fn migrate(
    args: &MigrateArgs,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let source = factory.open(&side(factory, &args.from)?).await?.backend;
    let target = factory.open(&side(factory, &args.to)?).await?.backend;
    let options = MigrateOptions {
        namespaces: args.namespaces.clone(),
        dry_run: args.dry_run,
        checkpoint: (!args.dry_run).then(|| args.checkpoint.clone()),
        labels: (shown(&args.from), shown(&args.to)),
    };
    let tty = std::io::stderr().is_terminal();
    let report = persistence_transfer::migrate(&source, &target, &options, |(ns, n)| {
        if tty {
            eprint!("\r{ns}: {} documents copied", thousands(n as f64));
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    let verified = report.verified();
    if verified {
        // done and checked: nothing to resume
        let _ = std::fs::remove_file(&args.checkpoint);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "from": shown(&args.from), "to": shown(&args.to),
                "source": source.name(), "target": target.name(),
                "verified": verified, "report": report,
            }))?
        );
    } else {
        let mut t = table(&["namespace", "copied", "source", "target", "checksums"]);
        for (ns, n) in &report.namespaces {
            let count = |d: &Option<persistence_transfer::Digest>| {
                d.map_or("-".into(), |d| d.count.to_string())
            };
            let sums = match (n.source, n.target) {
                (Some(s), Some(t)) if s == t => "match".to_string(),
                (Some(s), Some(t)) => format!("DIFFER {:016x} / {:016x}", s.checksum, t.checksum),
                _ => "-".into(),
            };
            t.add_row(vec![
                ns.clone().into(),
                right(n.copied),
                right(count(&n.source)),
                right(count(&n.target)),
                sums.into(),
            ]);
        }
        let what = if args.dry_run {
            "dry run: nothing written".to_string()
        } else if verified && report.terms_checked {
            "verified: every namespace's count and checksum match".to_string()
        } else if verified {
            "verified: every namespace's count and checksum of keys, bytes and TTLs match (the target cannot read index terms back, so they are not checked)".to_string()
        } else {
            format!(
                "NOT verified: a namespace differs (the target held other documents, or writes went on during the copy); rerun to resume from {}",
                shown(&args.checkpoint)
            )
        };
        println!(
            "migrate {} ({}) -> {} ({}): {what}",
            shown(&args.from),
            source.name(),
            shown(&args.to),
            target.name()
        );
        println!("{t}");
    }
    Ok(if verified || args.dry_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
