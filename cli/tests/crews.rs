//! `ta-persist crews list | show`, on crews imported into a redb database
//! as the seed's JSON.

use std::process::Command;

fn ta_persist(db: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ta-persist"));
    cmd.env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_BACKEND", "redb")
        .env("TA_REDB_PATH", db)
        .env("TA_PERSISTENCE_FALLBACK", "fail")
        .current_dir(std::env::temp_dir());
    cmd
}

#[test]
fn crews_are_listed_with_totals_and_shown_by_name_or_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.redb");
    let crew = |name: &str, id: &str, mode: &str, agents: usize| {
        let agents: Vec<serde_json::Value> = (0..agents)
            .map(|n| serde_json::json!({"agent_id": format!("a{n}"), "agent_class": "BasicAgent", "config": {}}))
            .collect();
        let value = serde_json::json!({"name": name, "crew_id": id, "execution_mode": mode, "agents": agents});
        serde_json::json!({"namespace": "crew", "key": name, "value": value, "ttl_ms": null,
            "index": [{"index": "crew_id", "term": id}]})
        .to_string()
    };
    let lines = [
        crew("research_team", "c-r", "sequential", 3),
        crew("writing_team", "c-w", "parallel", 2),
    ]
    .join("\n");
    let file = dir.path().join("crews.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = ta_persist(&db)
        .args(["import", "--in", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = ta_persist(&db)
        .args(["--json", "crews", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["total_crews"], 2);
    assert_eq!(stats["total_agents"], 5);
    assert_eq!(stats["crews_by_mode"]["parallel"], 1);

    let out = ta_persist(&db).args(["crews", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("research_team") && text.contains("2 crews"),
        "{text}"
    );

    for args in [
        &["crews", "show", "writing_team"][..],
        &["crews", "show", "--id", "c-w"],
    ] {
        let out = ta_persist(&db).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown["crew_id"], "c-w", "{args:?}");
    }
    let out = ta_persist(&db)
        .args(["crews", "show", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
