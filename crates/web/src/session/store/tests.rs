//! One behaviour suite, run on every session-store backend.

use super::*;

fn record(data: &str, created_at: i64, expires_at: i64) -> SessionRecord {
    SessionRecord {
        data: data.to_owned(),
        created_at,
        expires_at,
    }
}

async fn behaviour(store: &dyn SessionStore) {
    let (a, b) = (SessionKey::of("session-a"), SessionKey::of("session-b"));
    assert_eq!(store.load(&a, 1_000).await.unwrap(), None);

    store
        .save(&a, &record("{\"n\":1}", 1_000, 2_000))
        .await
        .unwrap();
    store.save(&b, &record("{}", 1_000, 1_500)).await.unwrap();
    assert_eq!(
        store.load(&a, 1_100).await.unwrap(),
        Some(record("{\"n\":1}", 1_000, 2_000))
    );
    // Saving again replaces the data and the expiry, never the start.
    store
        .save(&a, &record("{\"n\":2}", 1_999, 2_500))
        .await
        .unwrap();
    assert_eq!(
        store.load(&a, 2_100).await.unwrap(),
        Some(record("{\"n\":2}", 1_000, 2_500))
    );
    // Expired sessions are not loaded, and are purged.
    assert_eq!(store.load(&b, 1_500).await.unwrap(), None);
    assert_eq!(store.purge_expired(1_600).await.unwrap(), 1);
    assert_eq!(store.purge_expired(1_600).await.unwrap(), 0);

    store.delete(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert_eq!(store.load(&a, 2_100).await.unwrap(), None);
    assert_ne!(SessionKey::of("x"), SessionKey::of("y"));
}

#[tokio::test]
async fn memory_store() {
    behaviour(&memory::MemorySessionStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sqlite::FILE_NAME);
    behaviour(&sqlite::SqliteSessionStore::open(&path).unwrap()).await;
    let store = sqlite::SqliteSessionStore::open(&path).unwrap();
    let key = SessionKey::of("kept");
    store.save(&key, &record("{}", 1, 10)).await.unwrap();
    drop(store);
    let reopened = sqlite::SqliteSessionStore::open(&path).unwrap();
    assert!(reopened.load(&key, 5).await.unwrap().is_some());
}

#[tokio::test]
async fn postgres_store_shared_by_two_nodes() {
    use store::postgres::PostgresStore;
    use testkit::postgres::TestDatabase;
    let db = TestDatabase::create().await;
    let first = PostgresStore::open(db.options()).await.unwrap();
    behaviour(&postgres::PostgresSessionStore::new(first.database())).await;
    // A session saved through one node is there on another.
    let second = PostgresStore::open(db.options()).await.unwrap();
    let one = postgres::PostgresSessionStore::new(first.database());
    let other = postgres::PostgresSessionStore::new(second.database());
    let key = SessionKey::of("shared");
    one.save(&key, &record("{\"user\":1}", 10, 100))
        .await
        .unwrap();
    assert_eq!(
        other.load(&key, 50).await.unwrap().map(|r| r.data),
        Some("{\"user\":1}".to_owned())
    );
}
