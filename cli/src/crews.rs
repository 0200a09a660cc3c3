//! `crews`: the crew registry (seed 000) on the configured backend.

use std::process::ExitCode;

use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::store::CrewRegistry;

use persistence_cli::report::{right, table};

#[derive(Debug, clap::Subcommand)]
pub enum Crews {
    /// Every crew: name, id, execution mode, agents; and the totals.
    List,
    /// One crew's definition, as stored (JSON).
    Show {
        /// The crew's name (or its id with --id).
        name: String,
        /// Look it up by crew id instead of name.
        #[arg(long)]
        id: bool,
    },
}

pub async fn run(
    command: &Crews,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let crews = CrewRegistry::new(crate::demo::open_backend(factory, settings).await?);
    match command {
        Crews::List => {
            let stats = crews.crew_stats().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["crew", "id", "mode", "agents"]);
            for c in &stats.crews {
                t.add_row(vec![
                    c.name.clone().into(),
                    c.crew_id.clone().into(),
                    c.mode.clone().into(),
                    right(c.agent_count),
                ]);
            }
            println!("{t}");
            let modes: Vec<String> = stats
                .crews_by_mode
                .iter()
                .map(|(m, n)| format!("{n} {m}"))
                .collect();
            println!(
                "{} crews ({}), {} agents",
                stats.total_crews,
                modes.join(", "),
                stats.total_agents
            );
        }
        Crews::Show { name, id } => {
            let found = if *id {
                crews.get_crew_by_id(name).await?
            } else {
                crews.get_crew(name).await?
            };
            let Some(crew) = found else {
                eprintln!("error: no crew {name:?}");
                return Ok(ExitCode::FAILURE);
            };
            println!("{}", serde_json::to_string_pretty(&crew)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
