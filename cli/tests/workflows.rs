//! `ta-persist workflows analytics | recent | show` on what the demo's
//! workflows scene wrote into a redb database, and the scene itself.

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

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_demo_scene_writes_workflows_the_commands_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.redb");
    let demo = json(ta_persist(&db).args([
        "--json",
        "demo",
        "--tasks",
        "4",
        "--runs",
        "0",
        "--workflows",
        "14",
        "--keep",
    ]));
    let scene = &demo["workflows_scene"];
    assert_eq!(scene["workflows"], 14);
    assert_eq!(scene["failed"], 2, "every seventh fails");
    assert_eq!(scene["crews"], 3);
    assert_eq!(scene["analytics"]["completed_workflows"], 12);

    let a = json(ta_persist(&db).args(["--json", "workflows", "analytics"]));
    assert_eq!(a["active_workflows"], 0);
    assert_eq!(a["completed_workflows"], 12);
    assert_eq!(a["failed_workflows"], 2);
    assert_eq!(a["recent_24h"], 14);
    assert_eq!(a["by_type"]["beltalowda"], 5);
    assert_eq!(a["by_type"]["swarm"], 9);
    assert_eq!(a["costs"]["workflow_count"], 14);
    let a = json(ta_persist(&db).args(["--json", "workflows", "analytics", "--type", "swarm"]));
    assert_eq!(a["by_type"].as_object().unwrap().len(), 1);

    let recent = json(ta_persist(&db).args(["--json", "workflows", "recent", "3"]));
    let recent = recent.as_array().unwrap();
    assert_eq!(recent.len(), 3);
    let newest = recent[0]["task_id"].as_str().unwrap().to_string();
    assert!(newest.ends_with("-13"), "newest first: {newest}");

    let shown = json(ta_persist(&db).args(["workflows", "show", &newest]));
    assert_eq!(
        shown["workflow"]["status"], "failed",
        "13 is the second seventh"
    );
    assert_eq!(shown["result"]["task_id"], newest.as_str());

    let text = ta_persist(&db)
        .args(["workflows", "recent"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("14 results") && text.contains(&newest),
        "{text}"
    );
    let out = ta_persist(&db)
        .args(["workflows", "show", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workflow"));

    // crews of the scene are there too
    let crews = json(ta_persist(&db).args(["--json", "crews", "list"]));
    assert_eq!(crews["total_crews"], 3);
}

#[test]
fn without_keep_the_scene_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.redb");
    let demo = json(ta_persist(&db).args([
        "--json",
        "demo",
        "--tasks",
        "2",
        "--runs",
        "0",
        "--workflows",
        "5",
    ]));
    assert_eq!(demo["workflows_scene"]["workflows"], 5);
    let a = json(ta_persist(&db).args(["--json", "workflows", "analytics"]));
    assert_eq!(a["completed_workflows"], 0);
    assert_eq!(a["costs"]["workflow_count"], 0);
    let crews = json(ta_persist(&db).args(["--json", "crews", "list"]));
    assert_eq!(crews["total_crews"], 0);
}
