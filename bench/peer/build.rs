//! Reads the resolved cqrs-es and postgres-es versions from Cargo.lock, so the report names the
//! versions actually built (`PEER_CQRS_ES_VERSION`, `PEER_POSTGRES_ES_VERSION`).

use std::path::Path;

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (crate_name, var) in [("cqrs-es", "PEER_CQRS_ES_VERSION"), ("postgres-es", "PEER_POSTGRES_ES_VERSION")] {
        let version = locked_version(&text, crate_name).unwrap_or_else(|| "unknown".to_owned());
        println!("cargo:rustc-env={var}={version}");
    }
}

/// The `version` of the `[[package]]` named `name` in a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}
