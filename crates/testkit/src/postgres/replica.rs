//! A throwaway PostgreSQL primary and a hot-standby replica streaming from
//! it, for tests of nrls against a read replica.
//!
//! The pair is built from scratch with the server's own tools (`initdb`,
//! `pg_ctl`, `pg_basebackup`) in a directory of its own, on free loopback
//! ports: the shared test server is never touched (its `pg_hba.conf` allows
//! no replication anyway). PostgreSQL refuses to run as root, so when the
//! tests do, the tools run as the OS user `postgres`.
//!
//! The tools are found in `NRLS_TEST_PG_BINDIR`, else where `pg_config
//! --bindir` says, else in the newest `/usr/lib/postgresql/<version>/bin`.
//! Anything missing fails the test with that advice: tests are never skipped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::types::{FromSqlOwned, ToSql};

use super::{describe, try_connect, unix_seconds};

/// The variable naming the directory of the PostgreSQL server programs.
const BINDIR_VARIABLE: &str = "NRLS_TEST_PG_BINDIR";

/// How long the waits for the replica (recovery, catching up, pausing) last
/// before the test fails: replication on loopback takes milliseconds.
const WAIT: Duration = Duration::from_secs(10);
/// Seconds `pg_ctl` waits for a server to start or stop.
const PG_CTL_WAIT: &str = "30";
/// Lines of a server log quoted when something fails.
const LOG_TAIL: usize = 30;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A primary and a hot standby of it, both running until this value is
/// dropped; then both are stopped and their files removed.
pub struct ReplicaPair {
    dir: PathBuf,
    tools: Tools,
    primary: Node,
    replica: Node,
}

/// One server of the pair.
struct Node {
    name: &'static str,
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl ReplicaPair {
    /// Creates the primary, clones the replica from it, starts both and
    /// waits until the replica answers as a standby.
    ///
    /// # Panics
    /// If a step fails, with the tool's output and the server log's tail.
    pub async fn start() -> ReplicaPair {
        // The tools block for seconds: off the runtime's threads. A panic in
        // there has already cleaned up (the half-built pair was dropped).
        let pair = tokio::task::spawn_blocking(ReplicaPair::create)
            .await
            .unwrap_or_else(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("starting the replica pair: {e}"),
            });
        pair.wait_until_standby().await;
        pair
    }

    /// The primary's `postgres` database, as superuser `postgres`.
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// The replica's `postgres` database, as superuser `postgres`.
    pub fn replica_url(&self) -> String {
        self.replica.url()
    }

    /// Waits until the replica has replayed everything the primary had
    /// written when this was called.
    ///
    /// # Panics
    /// If that takes more than 10 s, e.g. because replay is paused.
    pub async fn wait_caught_up(&self) {
        let primary = self.connect(&self.primary).await;
        let target: String = value(
            &primary,
            "SELECT pg_current_wal_lsn()::text",
            &[],
            "the primary's WAL position",
        )
        .await;
        let replica = self.connect(&self.replica).await;
        self.wait_on(
            &replica,
            "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
            &target,
            &format!("the replica to replay the primary's WAL up to {target}"),
        )
        .await;
    }

    /// Stops the replica replaying WAL, and waits until it has: from then on
    /// it shows nothing new the primary writes, as a lagging replica would.
    ///
    /// # Panics
    /// If the replica refuses or does not pause within 10 s.
    pub async fn pause_replay(&self) {
        let replica = self.connect(&self.replica).await;
        replica
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .unwrap_or_else(|e| panic!("pausing replay: {}", describe(&e)));
        // Until the startup process acknowledges it, the request is only a
        // flag; waiting for "paused" makes the pause certain, not likely.
        self.wait_on(
            &replica,
            "SELECT pg_get_wal_replay_pause_state() = $1",
            "paused",
            "the replica to pause replay",
        )
        .await;
    }

    /// Resumes replay after [`pause_replay`](Self::pause_replay).
    ///
    /// # Panics
    /// If the replica refuses.
    pub async fn resume_replay(&self) {
        self.connect(&self.replica)
            .await
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .unwrap_or_else(|e| panic!("resuming replay: {}", describe(&e)));
    }

    /// The blocking part of [`start`](Self::start).
    fn create() -> ReplicaPair {
        let tools = Tools::find();
        let dir = scratch_dir();
        let [primary_port, replica_port] = free_ports();
        let pair = ReplicaPair {
            primary: Node::new(&dir, "primary", primary_port),
            replica: Node::new(&dir, "replica", replica_port),
            dir,
            tools,
        };
        // From here on a panic drops `pair`, which stops whatever started and
        // removes the directory.
        pair.tools.hand_over(&pair.dir);
        pair.init_primary();
        pair.start_node(&pair.primary);
        pair.clone_replica();
        pair.start_node(&pair.replica);
        pair
    }

    fn init_primary(&self) {
        let data = path_arg(&self.primary.data);
        // No syncing to disk anywhere: the cluster is thrown away, and a crash
        // of the machine would end the test run anyway. Commits still wait
        // for their (unsynced) WAL write, so nrls behaves as it would live.
        self.tools
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .unwrap_or_else(|e| panic!("initdb of the test primary: {e}"));
        let settings = format!(
            "\n# Test replica pair\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             wal_level = replica\n\
             max_wal_senders = 4\n\
             hot_standby = on\n\
             fsync = off\n",
            port = self.primary.port,
            dir = self.dir.display(),
        );
        append(&self.primary.data.join("postgresql.conf"), &settings);
        // Replaces initdb's rules outright, so the pair's access is exactly
        // this: anyone on loopback, for queries and for replication.
        let hba = "local all all trust\n\
                   local replication all trust\n\
                   host all all 127.0.0.1/32 trust\n\
                   host replication all 127.0.0.1/32 trust\n";
        std::fs::write(self.primary.data.join("pg_hba.conf"), hba)
            .unwrap_or_else(|e| panic!("writing the test primary's pg_hba.conf: {e}"));
    }

    /// Copies the running primary into the replica's directory, set up (by
    /// `-R`: `standby.signal` and `primary_conninfo`) to stream from it.
    fn clone_replica(&self) {
        self.tools
            .run(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    &path_arg(&self.replica.data),
                    "-R",
                    "-X",
                    "stream",
                    // Else the backup waits for a spread checkpoint: minutes.
                    "--checkpoint=fast",
                    "--no-sync",
                ],
            )
            .unwrap_or_else(|e| {
                panic!(
                    "pg_basebackup of the test replica: {e}\n{}",
                    self.primary.log_tail()
                )
            });
        // The copied configuration names the primary's port; a later line wins.
        append(
            &self.replica.data.join("postgresql.conf"),
            &format!("port = {}\n", self.replica.port),
        );
    }

    fn start_node(&self, node: &Node) {
        self.tools
            .run(
                "pg_ctl",
                &[
                    "-D",
                    &path_arg(&node.data),
                    "-l",
                    &path_arg(&node.log),
                    "-w",
                    "-t",
                    PG_CTL_WAIT,
                    "start",
                ],
            )
            .unwrap_or_else(|e| {
                panic!("starting the test {}: {e}\n{}", node.name, node.log_tail())
            });
    }

    /// `pg_ctl -w` returns once the standby accepts connections; this also
    /// makes sure it is one (in recovery) rather than a promoted copy.
    async fn wait_until_standby(&self) {
        let replica = self.connect(&self.replica).await;
        let in_recovery: bool = value(
            &replica,
            "SELECT pg_is_in_recovery()",
            &[],
            "whether the test replica is in recovery",
        )
        .await;
        if !in_recovery {
            panic!(
                "the test replica is not in recovery: it is no standby\n{}",
                self.replica.log_tail()
            );
        }
    }

    /// Polls `sql` (one text parameter, one boolean result) on `client`
    /// until it is true.
    async fn wait_on(&self, client: &Client, sql: &str, parameter: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let done: bool = value(client, sql, &[&parameter], what).await;
            if done {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {WAIT:?} for {what} in vain\n{}",
                    self.replica.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn connect(&self, node: &Node) -> Client {
        try_connect(&node.url()).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test {}: {}\n{}",
                node.name,
                describe(&e),
                node.log_tail()
            )
        })
    }
}

impl Drop for ReplicaPair {
    fn drop(&mut self) {
        // Replica first, so it does not log the primary's disappearance. An
        // immediate stop is a crash: nothing is worth a clean shutdown here.
        for node in [&self.replica, &self.primary] {
            if !node.data.join("postmaster.pid").exists() {
                continue;
            }
            let data = path_arg(&node.data);
            let stopped = self.tools.run(
                "pg_ctl",
                &[
                    "-D",
                    &data,
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    PG_CTL_WAIT,
                    "stop",
                ],
            );
            if let Err(e) = stopped {
                eprintln!("test {} not stopped: {e}", node.name);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("{} not removed: {e}", self.dir.display());
        }
    }
}

/// The first column of the one row `sql` returns.
///
/// # Panics
/// If the query fails, naming `what` it was for.
async fn value<T: FromSqlOwned>(
    client: &Client,
    sql: &str,
    parameters: &[&(dyn ToSql + Sync)],
    what: &str,
) -> T {
    client
        .query_one(sql, parameters)
        .await
        .and_then(|row| row.try_get(0))
        .unwrap_or_else(|e| panic!("querying {what}: {}", describe(&e)))
}

impl Node {
    fn new(dir: &Path, name: &'static str, port: u16) -> Node {
        Node {
            name,
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            port,
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The end of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let Ok(log) = std::fs::read_to_string(&self.log) else {
            return format!("(no {} log at {})", self.name, self.log.display());
        };
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        let mut text = format!(
            "--- end of the {} log ({}) ---",
            self.name,
            self.log.display()
        );
        for line in tail {
            let _ = write!(text, "\n{line}");
        }
        text
    }
}

/// How the server programs are run.
struct Tools {
    bindir: PathBuf,
    user: RunAs,
}

enum RunAs {
    /// Not root: as the current user.
    Me,
    /// Root: as `postgres`, by `runuser` (util-linux)...
    Runuser,
    /// ...or by `su` where there is no `runuser`.
    Su,
}

impl Tools {
    /// # Panics
    /// If the programs or, when root, a way to run them as `postgres`
    /// cannot be found.
    fn find() -> Tools {
        let bindir = find_bindir();
        // `/proc/self` belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let user = if !root {
            RunAs::Me
        } else if succeeds(Command::new("runuser").arg("--version")) {
            RunAs::Runuser
        } else {
            RunAs::Su
        };
        Tools { bindir, user }
    }

    /// Gives `dir` to `postgres`, when the tools run as that user.
    fn hand_over(&self, dir: &Path) {
        if matches!(self.user, RunAs::Me) {
            return;
        }
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres:postgres").arg(dir);
        output(&mut chown).unwrap_or_else(|e| {
            panic!(
                "{e}\nThe tests run as root, and PostgreSQL refuses to: they need an OS user \
                 `postgres` (the PostgreSQL packages create it) to run the test servers as."
            )
        });
    }

    /// Runs server program `program`; the error carries its output.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = path_arg(&self.bindir.join(program));
        let mut command = match self.user {
            RunAs::Me => {
                let mut command = Command::new(&path);
                command.args(args);
                command
            }
            RunAs::Runuser => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--", &path]).args(args);
                command
            }
            RunAs::Su => {
                let line = std::iter::once(path.as_str())
                    .chain(args.iter().copied())
                    .map(shell_quote)
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut command = Command::new("su");
                command.args(["postgres", "-s", "/bin/sh", "-c", &line]);
                command
            }
        };
        // The server programs look up their own path, which fails in a
        // working directory `postgres` may not enter (a checkout under /root).
        command.current_dir("/");
        output(&mut command).map(drop)
    }
}

/// Runs `command`, returning its stdout, or what went wrong with its output.
fn output(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{shown}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn succeeds(command: &mut Command) -> bool {
    output(command).is_ok()
}

/// The directory holding `initdb`, `pg_ctl` and `pg_basebackup`.
fn find_bindir() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file();
    if let Ok(dir) = std::env::var(BINDIR_VARIABLE) {
        let dir = PathBuf::from(dir);
        if !has_tools(&dir) {
            panic!("{BINDIR_VARIABLE}={} holds no initdb", dir.display());
        }
        return dir;
    }
    let from_pg_config = output(Command::new("pg_config").arg("--bindir"))
        .ok()
        .map(|out| PathBuf::from(out.trim()));
    // Debian keeps each version's server programs apart, off PATH.
    let newest_debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .max_by_key(|(version, _)| *version)
        .map(|(_, dir)| dir);
    from_pg_config
        .filter(|dir| has_tools(dir))
        .or(newest_debian)
        .unwrap_or_else(|| {
            panic!(
                "the PostgreSQL server programs (initdb, pg_ctl, pg_basebackup) are not found: \
                 tests of read replicas build a primary and a replica of their own. Install the \
                 server (15 or newer), or name the directory holding them in {BINDIR_VARIABLE}."
            )
        })
}

/// A new, private directory for the pair.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "nrls-replica-{}-{}-{}",
        unix_seconds(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Two ports free on loopback. Both listeners are held at once, so the two
/// differ; another process may still take one before the server binds it,
/// which a random ephemeral port makes unlikely.
fn free_ports() -> [u16; 2] {
    let bind =
        || TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind loopback: {e}"));
    let listeners = [bind(), bind()];
    listeners.map(|listener| {
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("loopback address: {e}"))
            .port()
    })
}

fn append(file: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", file.display()));
}

/// Temporary paths are ASCII in practice; a lossy conversion only matters
/// for paths no test uses.
fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio_postgres::Client;
    use tokio_postgres::error::SqlState;

    use super::ReplicaPair;
    use crate::postgres::try_connect;

    async fn rows(client: &Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn a_replica_follows_and_can_be_paused() {
        let began = Instant::now();
        let pair = ReplicaPair::start().await;
        eprintln!("ReplicaPair::start took {:?}", began.elapsed());
        let primary = try_connect(&pair.primary_url()).await.unwrap();
        let replica = try_connect(&pair.replica_url()).await.unwrap();

        primary
            .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        pair.wait_caught_up().await;
        assert_eq!(rows(&replica).await, 1);

        pair.pause_replay().await;
        primary
            .batch_execute("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rows(&replica).await, 1, "a paused replica stays stale");

        pair.resume_replay().await;
        pair.wait_caught_up().await;
        assert_eq!(rows(&replica).await, 2);

        let refused = replica
            .batch_execute("INSERT INTO t VALUES (3)")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    }
}
