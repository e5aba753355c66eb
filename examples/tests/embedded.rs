//! The embedding example runs end to end: store, workers and in-process ingestion deliver a
//! signed event to its receiver, and the program stops cleanly.

use std::process::Command;

#[test]
fn the_embedded_service_delivers_a_verified_event() {
    for database in ["memory:", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let url = if database == "sqlite" {
            format!("sqlite://{}", dir.path().join("embedded.db").display())
        } else {
            database.to_owned()
        };
        let out = Command::new(env!("CARGO_BIN_EXE_embedded"))
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{url}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("queued 1 delivery"), "{stdout}");
        assert!(
            stdout.contains("delivered and verified: project_created"),
            "{stdout}"
        );
    }
}

#[test]
fn a_mistyped_database_scheme_is_refused_not_taken_for_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_embedded"))
        .current_dir(dir.path())
        .env("DATABASE_URL", "postgress://app:pw-s3cret@db/hooks")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown database URL scheme") && stderr.contains("postgress://"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-s3cret"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file is created"
    );
}
