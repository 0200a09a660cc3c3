//! `tasks` and `docs` against a real sled database in a temp dir, through
//! the real binary.

use std::process::Command;

fn ta_persist(db: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(args)
        .env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_BACKEND", "sled")
        .env("TA_PERSISTENCE_FALLBACK", "fail")
        .env("TA_SLED_PATH", db)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ta-persist");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(db: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ta_persist(db, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn operators_can_list_show_find_and_delete_stored_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (code, _, err) = ta_persist(&db, &["demo", "--tasks", "4", "--keep"]);
    assert_eq!(code, 0, "{err}");

    let listed = json(&db, &["tasks", "list"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{listed}");
    let id = rows[0]["task_id"].as_str().unwrap().to_string();
    assert_eq!(rows[0]["status"], "Completed");

    let by_request = json(
        &db,
        &["tasks", "list", "--request-id", &format!("{id}-req-2")],
    );
    assert_eq!(by_request.as_array().unwrap().len(), 1, "{by_request}");
    assert_eq!(by_request[0]["task_id"], id.as_str());

    let shown = json(&db, &["tasks", "show", &id]);
    assert_eq!(shown["task"]["task_id"], id.as_str());
    assert!(shown["version"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(shown["expires"], "never");

    let doc = json(&db, &["docs", "get", "task", &id]);
    assert_eq!(doc["json"], true);
    assert_eq!(doc["value"]["task_id"], id.as_str());
    assert_eq!(
        json(&db, &["docs", "list", "task", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    json(&db, &["tasks", "delete", &id]);
    assert_eq!(json(&db, &["tasks", "list"]).as_array().unwrap().len(), 3);
    let (code, _, err) = ta_persist(&db, &["tasks", "show", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("no task"), "{err}");
    let (code, _, err) = ta_persist(&db, &["tasks", "delete", &id]);
    assert_eq!(code, 1, "deleting a missing task is an error");
    assert!(err.contains(&id), "{err}");
}
