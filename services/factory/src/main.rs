//! `factory`: the command-line entry point. See `factory --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches as _};
use jetsource::topology::Topology;
use jetsource_cli::{Extra, Settings};

// JSON and NATS headers allocate per message; mimalloc keeps that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Generate the Kubernetes files derived from nats/ and the registry: the topology as NACK
/// resources (k8s/overlays/{dev,prod}/topology.yaml), the NATS server configuration with the
/// accounts (k8s/base/nats/) and one Deployment per service. With --check, only report files
/// that differ.
#[derive(Debug, Args)]
struct K8sArgs {
    /// The kustomize tree to write into.
    #[arg(long, default_value = "k8s")]
    dir: PathBuf,
    /// Change nothing; fail if a committed file differs from a fresh generation.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let topology = match Topology::parse(factory::TOPOLOGY) {
        Ok(topology) => topology,
        Err(e) => {
            eprintln!("factory: the built-in topology does not parse: {e}");
            return ExitCode::FAILURE;
        }
    };
    jetsource_cli::main(Settings {
        app: factory::registry::app(),
        topology,
        env_prefix: "FACTORY",
        about: "The jetsource reference factory: products, stock and production orders, event-sourced on NATS \
                JetStream.",
        extra: vec![Extra {
            command: K8sArgs::augment_args(clap::Command::new("k8s").about(
                "Generate the Kubernetes files derived from nats/ and the registry (with --check, only report \
                 files that differ)",
            )),
            run: |matches| k8s_command(&K8sArgs::from_arg_matches(matches)?),
        }],
    })
}

fn k8s_command(args: &K8sArgs) -> anyhow::Result<()> {
    let topology = Topology::parse(factory::TOPOLOGY)?;
    let files = factory::k8s::generate(&topology).map_err(anyhow::Error::msg)?;
    if args.check {
        let drift = factory::k8s::drift(&args.dir, &files);
        if drift.is_empty() {
            println!("{} generated files are up to date", files.len());
            return Ok(());
        }
        for path in &drift {
            println!("differs: {}", args.dir.join(path).display());
        }
        anyhow::bail!("{} generated files are stale: run `factory k8s`", drift.len());
    }
    factory::k8s::write(&args.dir, &files)?;
    for file in &files {
        println!("wrote {}", args.dir.join(&file.path).display());
    }
    Ok(())
}
