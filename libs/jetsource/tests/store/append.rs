use std::sync::Arc;

use jetsource::{CommandContext, RepositoryConfig};

use crate::support::{BinCommand, Env, id, stored};

async fn thirty_two_tasks_on_one_aggregate_lose_no_update_and_leave_dense_versions(env: Env) {
    // Arrange: one repository shared by 32 tasks (commands on one aggregate queue in-process)
    let repo = Arc::new(env.repository(RepositoryConfig::default()));
    let bin = id("bolt@main");

    // Act
    let tasks: Vec<_> = (1..=32_u64)
        .map(|qty| {
            let (repo, bin) = (Arc::clone(&repo), bin.clone());
            tokio::spawn(async move { repo.execute(&bin, BinCommand::Receive { qty }, &CommandContext::new()).await })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().expect("every append succeeds").version);
    }

    // Assert
    versions.sort_unstable();
    assert_eq!(versions, (1..=32).collect::<Vec<_>>());
    assert_contiguous(&env, "evt.bin.bolt@main", 32).await;
    repo.clear_cache();
    let loaded = repo.load(&bin).await.unwrap();
    assert_eq!((loaded.state.on_hand, loaded.version), ((1..=32).sum::<u64>(), 32));
}

async fn thirty_two_writers_with_their_own_caches_retry_conflicts_and_lose_nothing(env: Env) {
    // Arrange: 32 repositories, as 32 processes would be: OCC conflicts are real here
    let config = RepositoryConfig { max_attempts: 200, snapshot_every: 8, ..Default::default() };
    let bin = id("nut@main");

    // Act
    let tasks: Vec<_> = (1..=32_u64)
        .map(|qty| {
            let repo = env.repository(config.clone());
            let bin = bin.clone();
            tokio::spawn(async move { repo.execute(&bin, BinCommand::Receive { qty }, &CommandContext::new()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("every command lands after retrying");
    }

    // Assert
    assert_contiguous(&env, "evt.bin.nut@main", 32).await;
    let fresh = env.repository(RepositoryConfig::default()).load(&bin).await.unwrap();
    assert_eq!(fresh.state.on_hand, (1..=32).sum::<u64>());
}

/// Counts the optimistic-concurrency conflicts a repository meets.
#[derive(Default)]
struct Conflicts(std::sync::atomic::AtomicU64);

impl jetsource::Observer for Conflicts {
    fn conflict(&self, _: &'static str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn writers_with_stale_caches_meet_conflicts_reload_and_lose_nothing(env: Env) {
    // Arrange: 8 repositories, as 8 processes, each caching the aggregate after its own
    // command: all but the last then hold a stale state
    let conflicts = Arc::new(Conflicts::default());
    let bin = id("washer@main");
    let repos: Vec<_> = (0..8)
        .map(|_| {
            let observer: Arc<dyn jetsource::Observer> = Arc::clone(&conflicts) as _;
            Arc::new(
                env.repository(RepositoryConfig { max_attempts: 50, ..Default::default() }).with_observer(observer),
            )
        })
        .collect();
    for repo in &repos {
        repo.execute(&bin, BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.unwrap();
    }
    // (sequential, so conflict-free on one server; on R3 a fresh load may be answered by a
    // follower that has not applied the last write yet, and meet a conflict: counted apart)
    conflicts.0.store(0, std::sync::atomic::Ordering::Relaxed);

    // Act: each writes again from its cache
    let tasks: Vec<_> = repos
        .iter()
        .map(|repo| {
            let (repo, bin) = (Arc::clone(repo), bin.clone());
            tokio::spawn(
                async move { repo.execute(&bin, BinCommand::Receive { qty: 2 }, &CommandContext::new()).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("every command lands after reloading");
    }

    // Assert: the 7 stale caches each met a conflict at least once; nothing was lost
    let met = conflicts.0.load(std::sync::atomic::Ordering::Relaxed);
    assert!(met >= 7, "{met} conflicts for 7 stale caches");
    assert_contiguous(&env, "evt.bin.washer@main", 16).await;
    let fresh = env.repository(RepositoryConfig::default()).load(&bin).await.unwrap();
    assert_eq!(fresh.state.on_hand, 8 + 8 * 2);
}

async fn a_stale_expected_version_fails_at_once_and_a_current_one_succeeds(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    let bin = id("washer@main");
    repo.execute(&bin, BinCommand::Receive { qty: 5 }, &CommandContext::new()).await.unwrap();
    repo.execute(&bin, BinCommand::Receive { qty: 5 }, &CommandContext::new()).await.unwrap();

    let stale = repo.execute(&bin, BinCommand::Take { qty: 1 }, &CommandContext::new().with_expected_version(1)).await;
    let current =
        repo.execute(&bin, BinCommand::Take { qty: 1 }, &CommandContext::new().with_expected_version(2)).await;

    match stale {
        Err(jetsource::CommandError::PreconditionFailed { expected: 1, actual: 2 }) => {}
        other => panic!("expected precondition_failed, got {other:?}"),
    }
    assert_eq!(current.unwrap().version, 3);
}

async fn a_stale_cache_is_noticed_before_a_rejection_is_answered(env: Env) {
    // Arrange: repository A caches an empty bin; B (another process) then receives stock
    let a = env.repository(RepositoryConfig::default());
    let b = env.repository(RepositoryConfig::default());
    let bin = id("gear@main");
    assert!(a.execute(&bin, BinCommand::Take { qty: 1 }, &CommandContext::new()).await.is_err());
    b.execute(&bin, BinCommand::Receive { qty: 3 }, &CommandContext::new()).await.unwrap();

    // Act: A's cached state says "nothing on hand"
    let outcome = a.execute(&bin, BinCommand::Take { qty: 2 }, &CommandContext::new()).await;

    // Assert
    assert_eq!(outcome.expect("decided on fresh state").version, 2);
}

async fn a_rejected_command_writes_nothing(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    let bin = id("pin@main");

    let err = repo.execute(&bin, BinCommand::Take { qty: 1 }, &CommandContext::new()).await.unwrap_err();

    assert_eq!(err.code(), jetsource::ErrorCode::Rejected);
    assert_eq!(err.reason(), Some("insufficient_stock"));
    assert!(stored(&env.store, "evt.bin.pin@main").await.is_empty());
}

async fn assert_contiguous(env: &Env, subject: &str, n: u64) {
    let events = stored(&env.store, subject).await;
    let versions: Vec<u64> = events.iter().map(|e| e.attributes().unwrap().aggregate_version.unwrap()).collect();
    assert_eq!(versions, (1..=n).collect::<Vec<_>>(), "dense versions in stream order");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}

async fn a_command_that_records_nothing_answers_the_current_version(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    let bin = id("idle@main");
    let received = repo.execute(&bin, BinCommand::Receive { qty: 2 }, &CommandContext::new()).await.unwrap();

    let touched = repo.execute(&bin, BinCommand::Touch, &CommandContext::new()).await.unwrap();

    assert!(touched.events.is_empty());
    assert_eq!((touched.version, touched.stream_seq), (received.version, received.stream_seq));
}

crate::support::on_r1_and_r3!(
    thirty_two_tasks_on_one_aggregate_lose_no_update_and_leave_dense_versions,
    thirty_two_writers_with_their_own_caches_retry_conflicts_and_lose_nothing,
    writers_with_stale_caches_meet_conflicts_reload_and_lose_nothing,
    a_stale_expected_version_fails_at_once_and_a_current_one_succeeds,
    a_stale_cache_is_noticed_before_a_rejection_is_answered,
    a_rejected_command_writes_nothing,
    a_command_that_records_nothing_answers_the_current_version,
);
