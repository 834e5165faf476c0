//! `library`: the lending library's command line (`library up`, `library run <service>`, ...).

use std::process::ExitCode;

use jetsource::topology::Topology;
use jetsource_cli::Settings;

fn main() -> ExitCode {
    let topology = match Topology::parse(library::TOPOLOGY) {
        Ok(topology) => topology,
        Err(e) => {
            eprintln!("library: the built-in topology does not parse: {e}");
            return ExitCode::FAILURE;
        }
    };
    jetsource_cli::main(Settings {
        app: library::app(),
        topology,
        env_prefix: "LIBRARY",
        about: "A lending library event-sourced on NATS JetStream: books, members and loans.",
        extra: Vec::new(),
    })
}
