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
