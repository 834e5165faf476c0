//! Faults on a real 3-node cluster: the EVENTS stream leader killed under steady command load,
//! and the node restarted with its store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jetsource::{CommandContext, RepositoryConfig};
use jetsource_testkit::NatsCluster;
use tokio::sync::Mutex;

use crate::support::{Bin, BinCommand, connect_provisioned, id, stored};

const WRITERS: usize = 6;

/// The node leading `EVENTS`.
async fn events_leader(client: &async_nats::Client, cluster: &NatsCluster) -> usize {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = js.get_stream("EVENTS").await
            && let Ok(info) = stream.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
            && let Some(index) = cluster.node_index(&leader)
        {
            return index;
        }
        assert!(Instant::now() < deadline, "EVENTS has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last sequence of `EVENTS` as node `node` holds it (its monitoring endpoint).
fn replica_last_seq(cluster: &NatsCluster, node: usize) -> Option<u64> {
    cluster.stream_on(node, "EVENTS")?["state"]["last_seq"].as_u64()
}

#[tokio::test]
async fn killing_the_events_leader_under_load_loses_and_duplicates_no_acknowledged_command() {
    // Arrange: writers on their own aggregates, each command with its own id
    let mut cluster = NatsCluster::start();
    let (client, store, snapshots) = connect_provisioned(&cluster.urls(), 3).await;
    let repo = Arc::new(jetsource::Repository::<Bin>::new(
        store.clone(),
        Some(snapshots),
        RepositoryConfig { cache_capacity: 0, ..Default::default() },
    ));
    let leader = events_leader(&client, &cluster).await;
    let running = Arc::new(AtomicBool::new(true));
    let acknowledged: Arc<Mutex<Vec<(usize, String, Instant)>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (repo, running, acknowledged) = (Arc::clone(&repo), Arc::clone(&running), Arc::clone(&acknowledged));
            tokio::spawn(async move {
                let bin = id(&format!("w{w}@main"));
                let mut refused = 0;
                for i in 0.. {
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                    let command_id = format!("c-{w}-{i}");
                    let ctx = CommandContext::with_command_id(&command_id);
                    match repo.execute(&bin, BinCommand::Receive { qty: 1 }, &ctx).await {
                        Ok(_) => acknowledged.lock().await.push((w, command_id, Instant::now())),
                        Err(_) => refused += 1,
                    }
                }
                refused
            })
        })
        .collect();

    // Act: SIGKILL the leader mid-load; keep the load on until commands succeed again
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = Instant::now();
    cluster.kill_node(leader);
    let deadline = killed_at + Duration::from_secs(40);
    loop {
        let after = acknowledged.lock().await.iter().filter(|(_, _, at)| *at > killed_at).count();
        if after >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no command succeeded within 40 s of the leader kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    // Assert: every acknowledged command in its aggregate exactly once, versions 1..n. Direct
    // Get may be answered by any replica, so the read waits until the two running ones hold
    // everything the stream acknowledged.
    let acknowledged = acknowledged.lock().await.clone();
    let stream_last = {
        let js = async_nats::jetstream::new(client.clone());
        js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.last_sequence
    };
    let converged = Instant::now() + Duration::from_secs(30);
    for node in (0..cluster.len()).filter(|n| *n != leader) {
        while replica_last_seq(&cluster, node).is_none_or(|seq| seq < stream_last) {
            assert!(Instant::now() < converged, "n{node} did not apply up to {stream_last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut by_writer: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (w, command_id, _) in &acknowledged {
        by_writer.entry(*w).or_default().insert(command_id.clone());
    }
    for w in 0..WRITERS {
        let events = stored(&store, &format!("evt.bin.w{w}@main")).await;
        let versions: Vec<u64> = events.iter().map(|e| e.attributes().unwrap().aggregate_version.unwrap()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>(), "w{w}: versions are contiguous");
        let mut seen = BTreeSet::new();
        for event in &events {
            let command_id = jetsource::cloudevents::command_id(&event.headers).to_owned();
            assert!(seen.insert(command_id.clone()), "w{w}: {command_id} stored twice");
        }
        let missing: Vec<_> = by_writer.get(&w).into_iter().flatten().filter(|c| !seen.contains(*c)).collect();
        assert!(missing.is_empty(), "w{w}: acknowledged but not stored: {missing:?}");
    }

    // And the killed node, restarted with its store, catches up with the others
    let last = {
        let js = async_nats::jetstream::new(client.clone());
        js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.last_sequence
    };
    cluster.restart_node(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica_last_seq(&cluster, leader) != Some(last) {
        assert!(
            Instant::now() < deadline,
            "n{leader} did not catch up: {:?} of {last}",
            replica_last_seq(&cluster, leader)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
