//! Scratch databases for tests, after crates.io's `crates_io_test_db`: each
//! test gets its own database, cloned from a migrated template, and dropped
//! afterwards. Cloning a template is a file copy: far faster than migrating
//! a fresh database, and no test sees another's rows.
//!
//! The server is `NRLS_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), as a role that may create
//! databases. `scripts/test` starts it if it is down. A server that cannot be
//! reached fails the test with that advice: tests are never skipped.
//!
//! [`Proxy`] stands between nrls and the server for tests of network faults.
//!
//! A dev-dependency only: the release binary never links it.

mod proxy;
mod replica;

pub use proxy::{Link, Proxy};
pub use replica::ReplicaPair;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

use store::postgres::PostgresOptions;

/// The variable naming the test server.
pub const URL_VARIABLE: &str = "NRLS_TEST_DATABASE_URL";
/// The test server when [`URL_VARIABLE`] is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Key of the advisory lock a node holds while it migrates: a test holding
/// it keeps nodes in their "starting" phase.
pub const MIGRATION_LOCK: i64 = store::postgres::MIGRATION_LOCK;

/// Key of the advisory lock held while the template is built ("nrlstmpl").
const TEMPLATE_LOCK: i64 = 0x6e72_6c73_746d_706c;
/// Scratch databases older than this were left by a killed test run.
const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);
const PREFIX: &str = "nrls_test_";

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test; dropped (with any sessions still on
/// it) when this value is.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Clones the migrated template (building it on first use) into a new,
    /// empty database.
    ///
    /// # Panics
    /// If the server cannot be reached or refuses: a setup failure.
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let template = TEMPLATE
            .get_or_init(|| build_template(&admin_url))
            .await
            .clone();
        Self::clone_of(admin_url, &template).await
    }

    /// A new database with no schema at all (a clone of `template0`), for
    /// tests of the migrations themselves.
    ///
    /// # Panics
    /// If the server cannot be reached or refuses: a setup failure.
    pub async fn create_empty() -> TestDatabase {
        Self::clone_of(admin_url(), "template0").await
    }

    async fn clone_of(admin_url: String, template: &str) -> TestDatabase {
        let seconds = unix_seconds();
        let name = format!(
            "{PREFIX}{seconds}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {}", describe(&e)));
        TestDatabase {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// The database's URL, for `database_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Store options for this database, with a pool small enough for many
    /// tests to run side by side.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: 4,
            ..PostgresOptions::new(self.url.clone())
        }
    }

    /// Runs `sql` (one or more statements) on this database.
    ///
    /// # Panics
    /// If it fails.
    pub async fn execute(&self, sql: &str) {
        connect(&self.url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// The first column of the first row of `sql`, as a whole number (cast
    /// it to `bigint`).
    ///
    /// # Panics
    /// If it fails or returns no row.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        connect(&self.url)
            .await
            .query_one(sql, &[])
            .await
            .and_then(|row| row.try_get(0))
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
    }

    /// A session of its own on this database, e.g. to hold locks.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn session(&self) -> Client {
        connect(&self.url).await
    }

    /// Every row of every result of `sql` (simple query protocol, so several
    /// statements and no parameters), first column only, one line each: for
    /// `EXPLAIN` output and the like.
    ///
    /// # Panics
    /// If it fails.
    pub async fn query_text(&self, sql: &str) -> String {
        let messages = connect(&self.url)
            .await
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        let lines: Vec<&str> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .collect();
        lines.join("\n")
    }

    /// Ends every other session on this database, as a server restart or a
    /// failover would; returns how many there were.
    pub async fn terminate_sessions(&self) -> i64 {
        connect(&self.admin_url)
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .and_then(|row| row.try_get(0))
            .unwrap_or_else(|e| panic!("terminating sessions: {}", describe(&e)))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = std::mem::take(&mut self.name);
        // Drop cannot await, and may run inside a runtime: do it on a thread
        // with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test database not dropped: {e}");
        }
    }
}

/// The server URL from the environment.
pub fn admin_url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

async fn connect(url: &str) -> Client {
    try_connect(url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable for tests ({e}). The tests need a PostgreSQL server \
             (15 or newer) at {URL_VARIABLE} (default {DEFAULT_URL}) as a role that may create \
             databases; `scripts/postgres` starts the local one, and `scripts/test` runs it first."
        )
    })
}

async fn try_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let admin = try_connect(admin_url).await.map_err(|e| e.to_string())?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map_err(|e| format!("{name}: {}", describe(&e)))
}

/// Builds the template for this build's migrations unless it exists, under
/// an advisory lock: test binaries and other checkouts may race to build it.
/// Also drops scratch databases left by killed runs.
async fn build_template(admin_url: &str) -> String {
    let name = format!("nrls_template_{:016x}", migrations_fingerprint());
    let admin = connect(admin_url).await;
    let setup = async {
        admin
            .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
            .await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            let building = format!("{name}_build");
            // One statement per call: a multi-statement string would be one
            // implicit transaction, and these may not run in one.
            let steps = [
                format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
                format!("CREATE DATABASE \"{building}\""),
            ];
            for step in steps {
                admin.batch_execute(&step).await?;
            }
            migrate(&url_with_database(admin_url, &building)).await;
            // The migration session may still be ending: RENAME waits up to
            // 5 s for it.
            let steps = [
                format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""),
                format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
            ];
            for step in steps {
                admin.batch_execute(&step).await?;
            }
        }
        drop_stale(&admin).await?;
        admin
            .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
            .await?;
        Ok::<_, tokio_postgres::Error>(())
    };
    setup
        .await
        .unwrap_or_else(|e| panic!("cannot build the test template {name}: {}", describe(&e)));
    name
}

async fn migrate(url: &str) {
    if let Err(e) = store::postgres::migrate(&PostgresOptions::new(url)).await {
        panic!("migrating the test template: {e}");
    }
}

async fn drop_stale(admin: &Client) -> Result<(), tokio_postgres::Error> {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'nrls\\_test\\_%'",
            &[],
        )
        .await?;
    let now = unix_seconds();
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|c| now.saturating_sub(c) > STALE_AFTER.as_secs()) {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
        }
    }
    Ok(())
}

/// Changes whenever a migration does, so a checkout with other migrations
/// gets (and builds) a template of its own.
fn migrations_fingerprint() -> u64 {
    store::postgres::migrations_fingerprint()
}

/// The driver's message, with the server's error when there is one (the
/// driver's own text for those is just "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `url` naming database `name` instead: a `postgres://` URL gets a new path,
/// a key/value string a `dbname=` (the last one wins).
pub fn url_with_database(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={name}");
    };
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_end = base[scheme_end + 3..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + 3 + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            url_with_database("host=/tmp user=me", "x"),
            "host=/tmp user=me dbname=x"
        );
    }
}
