//! Opening what cannot be opened gives a typed error naming the path.

use std::io::Write;

use persistence_core::ErrorKind;
use persistence_sled::{SledBackend, SledOptions};

fn open_err(path: &std::path::Path) -> persistence_core::Error {
    SledBackend::open(&SledOptions::new(path)).expect_err("open must fail")
}

#[test]
fn a_file_is_not_a_database_directory() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let e = open_err(file.path());
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains(&file.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn a_database_held_by_another_handle_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledBackend::open(&SledOptions::new(dir.path())).unwrap();
    let e = open_err(dir.path());
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("held by another process"), "{e}");
}

#[test]
fn an_unwritable_directory_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    // root ignores permission bits: then use a place no one may create in
    let target = if std::fs::write(ro.join("probe"), b"x").is_ok() {
        std::path::PathBuf::from("/sys/ta-persistence-sled-test/db")
    } else {
        ro.join("db")
    };
    let e = open_err(&target);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(&target.display().to_string()), "{e}");
}

#[test]
fn damaged_database_files_are_corrupted_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = SledBackend::open(&SledOptions::new(dir.path())).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use persistence_core::backend::{BackendExt, DocumentWrite};
            for n in 0..100 {
                b.insert("ns", &n.to_string(), DocumentWrite::new(vec![7; 300]))
                    .await
                    .unwrap();
            }
            b.flush().await.unwrap();
        });
    }
    // overwrite the middle of every file sled keeps with garbage
    for entry in walk(dir.path()) {
        let len = std::fs::metadata(&entry).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&entry)
            .unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len / 3)).unwrap();
        f.write_all(&vec![0xA5; 4096]).unwrap();
    }
    match SledBackend::open(&SledOptions::new(dir.path())) {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        // sled may recover by truncating its log at the first bad record:
        // then what it serves must still be readable without panics
        Ok(b) => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                use persistence_core::backend::Backend;
                for n in 0..100 {
                    if let Err(e) = b.get("ns", &n.to_string()).await {
                        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
                    }
                }
            });
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if std::fs::metadata(&p).unwrap().len() > 0 {
            out.push(p);
        }
    }
    out
}
