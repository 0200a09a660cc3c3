//! `compact` and `purge-expired`: maintenance of the embedded engines,
//! which keep expired documents and freed pages on disk until told.

use std::process::ExitCode;

use persistence_core::config::Settings;
use persistence_redb::{RedbBackend, RedbSettings};
use persistence_sled::{SledBackend, SledOptions, SledSettings};

fn open_redb(settings: &Settings) -> Result<RedbBackend, Box<dyn std::error::Error>> {
    Ok(RedbBackend::open(
        &RedbSettings::from_settings(settings)?.options(),
    )?)
}

fn open_sled(settings: &Settings) -> Result<SledBackend, Box<dyn std::error::Error>> {
    let s = SledSettings::from_settings(settings)?;
    Ok(SledBackend::open(&SledOptions::new(s.path))?)
}

/// `compact`: give the embedded engine's free space back to the file system.
pub async fn compact(
    settings: &Settings,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (path, before, after) = match settings.backend.as_str() {
        "redb" => {
            let backend = open_redb(settings)?;
            let (before, after) = backend.compact().await?;
            (backend.path().display().to_string(), before, after)
        }
        "sled" => {
            return Err("sled cannot give space back (docs/embedded-engines.md): move its data to redb, the default embedded engine".into())
        }
        other => {
            return Err(format!(
                "compact is for the embedded engine redb (the settings choose {other:?}, which manages its own space)"
            )
            .into())
        }
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if json {
        let out = serde_json::json!({"path": path, "before_bytes": before, "after_bytes": after});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{path}: {:.1} MiB -> {:.1} MiB", mib(before), mib(after));
    }
    Ok(ExitCode::SUCCESS)
}

/// `purge-expired`: free every expired document the engine still keeps.
pub async fn purge_expired(
    settings: &Settings,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (path, purged) = match settings.backend.as_str() {
        "redb" => {
            let backend = open_redb(settings)?;
            let purged = backend.purge_expired(usize::MAX).await?;
            (backend.path().display().to_string(), purged)
        }
        "sled" => {
            let backend = open_sled(settings)?;
            let purged = backend.purge_expired()?;
            (backend.path().display().to_string(), purged)
        }
        "redis" => {
            let note = "Redis frees expired keys itself: nothing to purge";
            if json {
                let out = serde_json::json!({"backend": "redis", "purged": 0, "note": note});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{note}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        other => {
            return Err(format!(
                "purge-expired is for the embedded engines, redb and sled (the settings choose {other:?})"
            )
            .into())
        }
    };
    if json {
        let out = serde_json::json!({"path": path, "purged": purged});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{path}: freed {purged} expired documents");
    }
    Ok(ExitCode::SUCCESS)
}
