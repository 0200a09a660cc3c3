//! Opening what cannot be opened gives a typed error naming the path:
//! a directory, a file another handle holds, a place that cannot be
//! written, a file that is not a redb database, a damaged database.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use persistence_core::backend::{Backend, BackendExt, DocumentWrite};
use persistence_core::ErrorKind;
use persistence_redb::{RedbBackend, RedbOptions};

fn open_err(path: &Path) -> persistence_core::Error {
    RedbBackend::open(&RedbOptions::new(path)).expect_err("open must fail")
}

fn names(e: &persistence_core::Error, path: &Path) {
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_directory_is_not_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    names(&e, dir.path());
}

#[test]
fn a_database_held_by_another_handle_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let _held = RedbBackend::open(&RedbOptions::new(&path)).unwrap();
    let e = open_err(&path);
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    names(&e, &path);
    assert!(e.to_string().contains("held by another"), "{e}");
}

#[test]
fn a_database_is_free_again_once_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    drop(RedbBackend::open(&RedbOptions::new(&path)).unwrap());
    RedbBackend::open(&RedbOptions::new(&path)).expect("reopen after drop");
}

#[test]
fn an_unwritable_place_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    // root ignores permission bits: then use a place no one may create in
    let target = if std::fs::write(ro.join("probe"), b"x").is_ok() {
        std::path::PathBuf::from("/sys/ta-persistence-redb-test/db.redb")
    } else {
        ro.join("db.redb")
    };
    let e = open_err(&target);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    names(&e, &target);
}

#[test]
fn a_file_that_is_not_a_database_is_corrupted_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = b"these are someone's notes, not a database\n".repeat(100);
    std::fs::write(&path, &text).unwrap();
    let e = open_err(&path);
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    names(&e, &path);
    assert_eq!(std::fs::read(&path).unwrap(), text, "the file was changed");
}

#[test]
fn damaged_databases_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let b = RedbBackend::open(&RedbOptions::new(&path)).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for n in 0..300 {
                let write = DocumentWrite::new(vec![7; 300]).with_term("i", n.to_string());
                b.insert("ns", &n.to_string(), write).await.unwrap();
            }
        });
    }
    let len = std::fs::metadata(&path).unwrap().len();
    // three kinds of damage, each on a fresh copy
    type Damage = Box<dyn Fn(&Path)>;
    let damages: [(&str, Damage); 3] = [
        (
            "garbage in the middle",
            Box::new(move |p| {
                let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.seek(SeekFrom::Start(len / 3)).unwrap();
                f.write_all(&vec![0xA5; 8192]).unwrap();
            }),
        ),
        (
            "truncated to half",
            Box::new(move |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(len / 2).unwrap();
            }),
        ),
        (
            "garbage header",
            Box::new(|p| {
                let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.write_all(&[0x5A; 512]).unwrap();
            }),
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (what, damage) in damages {
        let copy = dir.path().join(format!("{what}.redb"));
        std::fs::copy(&path, &copy).unwrap();
        damage(&copy);
        match RedbBackend::open(&RedbOptions::new(&copy)) {
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Unavailable),
                    "{what}: {e}"
                );
                names(&e, &copy);
            }
            // redb may repair from its other commit slot: then what it
            // serves must be readable or a typed error, never a panic
            Ok(b) => rt.block_on(async {
                for n in 0..300 {
                    if let Err(e) = b.get("ns", &n.to_string()).await {
                        assert!(
                            matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Unavailable),
                            "{what}: {e}"
                        );
                    }
                }
            }),
        }
    }
}
