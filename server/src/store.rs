//! The server's crash-safe store: redb on the environment's [`Disk`].
//!
//! The real server hands it a file of an [`proto::fsdisk::FsDisk`]; the
//! simulator a file of its in-memory disk with power-loss semantics. redb
//! reaches either through [`DiskBackend`], its [`redb::StorageBackend`] over a
//! [`proto::env::File`].
//!
//! Values are JSON documents in redb tables. Every write is its own
//! transaction, committed with [`redb::Durability::Immediate`]: when a `put_*`
//! returns `Ok`, the record survives a crash. After a crash redb rolls back to
//! the last complete commit when the store is opened again.
//!
//! Lists come sorted by id in natural order: digit runs compare as numbers,
//! so `cmd-9999` comes before `cmd-10000`.

use std::cmp::Ordering;
use std::fmt;
use std::io;

use proto::env::{Disk, File};
use redb::{
    Builder, Database, Durability, ReadableTable, StorageBackend, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::artifacts::Artifact;
use crate::upgrade::UpgradeRecord;
use crate::wake::{ReconcileTask, WakeState};

/// Schema version this code writes and understands.
///
/// 1: times (`enrolled_at_us`, wake deadlines `due_us`, command and upgrade
/// times, every `*_us` field) were microseconds of the writing process's
/// uptime, meaningless after a restart (later builds of version 1 wrote
/// Unix microseconds). 2: every `*_us` is microseconds since the Unix
/// epoch; [`Store::migrate_times`] turns a version-1 store into one.
pub const SCHEMA_VERSION: u64 = 2;

/// Times below this (2001-09-09, 10^15 µs after the epoch) are process
/// uptimes of a version-1 store, not calendar times: an uptime that large
/// would be a process that ran for 31 years.
pub const UNIX_US_FLOOR: u64 = 1_000_000_000_000_000;

/// The tables whose records carry `*_us` times.
const TIMED_TABLES: [(TableDefinition<&str, &[u8]>, &str); 6] = [
    (AGENTS, "agents"),
    (COMMANDS, "commands"),
    (WAKE, "wake"),
    (RECONCILE, "reconcile_queue"),
    (UPGRADES, "upgrades"),
    (ARTIFACTS, "artifacts"),
];

/// What [`Store::migrate_times`] did to a version-1 store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeMigration {
    /// Records rewritten (those with at least one uptime value).
    pub records: u64,
    /// Time values converted.
    pub values: u64,
    /// The latest uptime at which something happened (deadlines aside):
    /// taken to be the moment the old process stopped, so it becomes "now".
    pub last_uptime_us: u64,
    /// What was added to every uptime value.
    pub shift_us: u64,
}

/// redb's page cache for the store (read and write caches together).
const CACHE_BYTES: usize = 8 << 20;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const AGENTS_BY_CERT: TableDefinition<&str, &str> = TableDefinition::new("agents_by_cert");
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
const WAKE: TableDefinition<&str, &[u8]> = TableDefinition::new("wake");
const RECONCILE: TableDefinition<&str, &[u8]> = TableDefinition::new("reconcile_queue");
const UPGRADES: TableDefinition<&str, &[u8]> = TableDefinition::new("upgrades");
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");

const KEY_CA: &str = "ca";
const KEY_SCHEMA: &str = "schema_version";
const KEY_COMMAND_SEQ: &str = "command_seq";
const KEY_TOKEN_USES: &str = "token_uses/";

/// The server's CA: its certificate and private key, PEM encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    /// The CA certificate agents trust.
    pub cert_pem: String,
    /// The CA's private key.
    pub key_pem: String,
}

impl fmt::Debug for CaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaRecord")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Identity assigned at enrollment; the key of the record.
    pub agent_id: String,
    /// Name the agent enrolled with.
    pub name: String,
    /// Agent version it last reported.
    pub version: String,
    /// Hex SHA-256 of the client certificate issued to it.
    pub cert_fingerprint: String,
    /// When it enrolled (sim or process microseconds).
    pub enrolled_at_us: u64,
    /// When the server last heard from it.
    pub last_seen_us: Option<u64>,
    /// Whether its certificate is no longer accepted.
    pub revoked: bool,
    /// Hex SHA-256 of the agent token issued at enrollment (`None`: issued
    /// none, nothing to check).
    #[serde(default)]
    pub agent_token_sha256: Option<String>,
}

/// Where a command is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// Waiting to be offered or acknowledged.
    Pending,
    /// The agent acknowledged it.
    Acked,
    /// The agent reported its result.
    Completed,
    /// Offered too often without an ack.
    Undeliverable,
    /// Offered and never acknowledged in time.
    TimedOut,
}

/// A dispatched command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// `cmd-0001`, `cmd-0002`, ... in dispatch order; the key of the record.
    pub command_id: String,
    /// Agent it is addressed to.
    pub agent_id: String,
    /// That agent's name, for reports.
    pub agent_name: String,
    /// The command line.
    pub command: String,
    /// Current status.
    pub status: CommandStatus,
    /// How often it was offered.
    pub attempts: u32,
    /// When it was dispatched.
    pub created_us: u64,
    /// When it was last offered.
    pub last_offer_us: Option<u64>,
    /// When the agent acknowledged it.
    pub acked_us: Option<u64>,
    /// When the agent reported its result.
    pub completed_us: Option<u64>,
    /// The result's exit code.
    pub exit_code: Option<i32>,
    /// The result's output.
    pub output: Option<String>,
}

/// What [`Store::put_wake`] does with the agent's queued reconcile task.
#[derive(Clone, Copy, Debug)]
pub enum TaskUpdate<'a> {
    /// Leave it as it is.
    Keep,
    /// Take it off the queue (it ran).
    Remove,
    /// Queue this one, replacing any queued for the agent.
    Put(&'a ReconcileTask),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's file could not be opened or created on the disk.
    #[error(
        "cannot open store file {path}: {source}; check that the data directory exists and is writable"
    )]
    File {
        /// Path of the store on the disk.
        path: String,
        /// The disk's error.
        source: io::Error,
    },
    /// Another process (or another store of this one) has the file open.
    #[error(
        "the store {path} is in use by another server process (it holds the file's lock); \
         stop that process, or give this server a data directory of its own"
    )]
    InUse {
        /// Path of the store on the disk.
        path: String,
    },
    /// redb refused the file.
    #[error(
        "cannot open store {path}: {source}; if it is not a store written by this server, \
         move it away and restart to begin with an empty store"
    )]
    Open {
        /// Path of the store on the disk.
        path: String,
        /// redb's error.
        source: Box<redb::DatabaseError>,
    },
    /// The store was written by a newer server.
    #[error(
        "store schema version {found} is newer than this server understands ({SCHEMA_VERSION}); \
         run a newer server or restore an older store"
    )]
    Schema {
        /// Version found in the store.
        found: u64,
    },
    /// A read, write or commit failed.
    #[error(
        "store operation failed: {0}; check the disk (space, permissions, I/O errors) and restart the server"
    )]
    Db(#[source] Box<redb::Error>),
    /// A stored record does not decode.
    #[error(
        "store record {table}/{key} is unreadable: {source}; it was written by an incompatible server, \
         restore a backup or move the store file away"
    )]
    Corrupt {
        /// Table of the record.
        table: &'static str,
        /// Key of the record.
        key: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode a {table} record: {source}; this is a bug, please report it")]
    Encode {
        /// Table the record was for.
        table: &'static str,
        /// The encoding error.
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// redb's [`StorageBackend`] over a file of a [`Disk`].
///
/// `sync_data` maps to [`File::sync`] whether or not redb asks for an
/// eventual sync: the disk has no cheaper write barrier.
#[derive(Debug)]
pub struct DiskBackend {
    file: Box<dyn File>,
}

impl DiskBackend {
    /// A backend storing the database in `file`.
    pub fn new(file: Box<dyn File>) -> DiskBackend {
        DiskBackend { file }
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let mut buf = vec![0; len];
        self.file.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        self.file.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write_at(offset, data)
    }
}

/// The server's store: CA material, enrolled agents, the command queue.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens the store at `path` on `disk`, creating an empty one if the file
    /// does not exist (or is empty), and recovering the last complete commit
    /// after a crash.
    ///
    /// A new store is built in `<path>.new` and renamed into place once it is
    /// complete and durable: redb sizes a new file before it writes its magic
    /// number, and refuses a non-empty file without one, so a crash while it
    /// initialized `path` itself would leave a store that never opens again.
    pub fn open(disk: &dyn Disk, path: &str) -> Result<Store, StoreError> {
        let file_error = |source| StoreError::File {
            path: path.to_string(),
            source,
        };
        let missing = match disk.open(path, false) {
            Ok(file) => file.is_empty().map_err(file_error)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(file_error(e)),
        };
        if missing {
            Self::create(disk, path)?;
        }
        let file = disk.open(path, false).map_err(file_error)?;
        // Whoever put the file there may not have made its name durable.
        disk.sync_dir().map_err(file_error)?;
        let store = Store {
            db: Self::database(path, file)?,
        };
        store.init()?;
        Ok(store)
    }

    /// Builds an empty store in `<path>.new`, makes it durable, renames it to `path`.
    fn create(disk: &dyn Disk, path: &str) -> Result<(), StoreError> {
        let tmp = format!("{path}.new");
        let file_error = |source| StoreError::File {
            path: tmp.clone(),
            source,
        };
        // A leftover of a crash during an earlier creation is started over.
        let file = disk.open(&tmp, true).map_err(file_error)?;
        file.set_len(0).map_err(file_error)?;
        let store = Store {
            db: Self::database(&tmp, file)?,
        };
        store.init()?;
        drop(store);
        // redb syncs on a clean close but cannot report a failure there: sync again.
        disk.open(&tmp, false)
            .and_then(|file| file.sync())
            .map_err(file_error)?;
        disk.rename(&tmp, path).map_err(file_error)?;
        disk.sync_dir().map_err(file_error)
    }

    /// Opens (or initializes, when `file` is empty) the redb database in `file`.
    ///
    /// The file is locked first, as redb's own file backend does: two
    /// databases on one file would each write their allocator state over
    /// the other's.
    fn database(path: &str, file: Box<dyn File>) -> Result<Database, StoreError> {
        file.try_lock().map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock => StoreError::InUse {
                path: path.to_string(),
            },
            _ => StoreError::File {
                path: path.to_string(),
                source,
            },
        })?;
        // An empty file is a fresh store being initialized: nothing to repair.
        let fresh = file.is_empty().unwrap_or(false);
        Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_file_format_v3(true)
            .set_repair_callback(move |session| {
                if !fresh {
                    tracing::info!(
                        progress = session.progress(),
                        "repairing the store after an unclean shutdown"
                    );
                }
            })
            .create_with_backend(DiskBackend::new(file))
            .map_err(|source| StoreError::Open {
                path: path.to_string(),
                source: Box::new(source),
            })
    }

    /// Creates the tables and checks (or writes) the schema version.
    fn init(&self) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            let found = counters.get(KEY_SCHEMA)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => return Err(StoreError::Schema { found }),
                // An older version stays as it is until `migrate_times`.
                Some(_) => {}
                None => {
                    counters.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(META)?;
            txn.open_table(AGENTS)?;
            txn.open_table(AGENTS_BY_CERT)?;
            txn.open_table(COMMANDS)?;
            txn.open_table(WAKE)?;
            txn.open_table(RECONCILE)?;
            txn.open_table(UPGRADES)?;
            txn.open_table(ARTIFACTS)?;
            Ok(())
        })
    }

    /// The schema version the store holds.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let counters = txn.open_table(COUNTERS)?;
        Ok(counters
            .get(KEY_SCHEMA)?
            .map_or(SCHEMA_VERSION, |v| v.value()))
    }

    /// Overwrites the schema version (tests build old stores with it).
    #[cfg(test)]
    pub(crate) fn set_schema_version(&self, version: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(COUNTERS)?.insert(KEY_SCHEMA, version)?;
            Ok(())
        })
    }

    /// Brings a version-1 store to version 2, in one transaction: every
    /// `*_us` value below [`UNIX_US_FLOOR`] is a process uptime, and is
    /// moved onto the calendar as if the old process had stopped at the
    /// latest time at which something happened (deadlines aside) and
    /// restarted at `now_unix_us`. Order and
    /// distances are kept: the newest enrollment stays the newest, a wake
    /// that was due 27 s after the last thing the old server did is due
    /// 27 s from now, a deadline already past is due at once. Values
    /// already on the calendar (written by a later build of version 1) are
    /// left alone. `None` when the store is at version 2 already (nothing
    /// is written then).
    pub fn migrate_times(&self, now_unix_us: u64) -> Result<Option<TimeMigration>, StoreError> {
        if self.schema_version()? >= SCHEMA_VERSION {
            return Ok(None);
        }
        self.write(|txn| {
            // Every record, decoded generically.
            let mut docs: Vec<(usize, String, serde_json::Value)> = Vec::new();
            for (t, (table, name)) in TIMED_TABLES.iter().enumerate() {
                let table = txn.open_table(*table)?;
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let doc = serde_json::from_slice(value.value()).map_err(|source| {
                        StoreError::Corrupt {
                            table: name,
                            key: key.value().to_string(),
                            source,
                        }
                    })?;
                    docs.push((t, key.value().to_string(), doc));
                }
            }
            // The last thing the old process did: its latest past time
            // (deadlines lie ahead of it).
            let mut last_uptime_us = 0;
            for (_, _, doc) in &docs {
                visit_times(&mut doc.clone(), &mut |key, v| {
                    if *v < UNIX_US_FLOOR && !is_deadline(key) {
                        last_uptime_us = last_uptime_us.max(*v);
                    }
                });
            }
            let shift_us = now_unix_us.saturating_sub(last_uptime_us);
            let (mut records, mut values) = (0, 0);
            for (t, key, mut doc) in docs {
                let mut changed = 0;
                visit_times(&mut doc, &mut |_, v| {
                    if *v < UNIX_US_FLOOR {
                        *v = v.saturating_add(shift_us);
                        changed += 1;
                    }
                });
                if changed > 0 {
                    let (table, name) = TIMED_TABLES[t];
                    let json = encode(name, &doc)?;
                    txn.open_table(table)?
                        .insert(key.as_str(), json.as_slice())?;
                    records += 1;
                    values += changed;
                }
            }
            txn.open_table(COUNTERS)?
                .insert(KEY_SCHEMA, SCHEMA_VERSION)?;
            Ok(Some(TimeMigration {
                records,
                values,
                last_uptime_us,
                shift_us,
            }))
        })
    }

    /// The CA material, if it was created.
    pub fn ca(&self) -> Result<Option<CaRecord>, StoreError> {
        self.get(META, "meta", KEY_CA)
    }

    /// Stores the CA material (replacing any).
    pub fn put_ca(&self, ca: &CaRecord) -> Result<(), StoreError> {
        let json = encode("meta", ca)?;
        self.write(|txn| {
            txn.open_table(META)?.insert(KEY_CA, json.as_slice())?;
            Ok(())
        })
    }

    /// Stores an agent (replacing the record with the same `agent_id`).
    pub fn put_agent(&self, a: &AgentRecord) -> Result<(), StoreError> {
        let json = encode("agents", a)?;
        let fingerprint = a.cert_fingerprint.to_ascii_lowercase();
        self.write(|txn| {
            let mut agents = txn.open_table(AGENTS)?;
            let mut by_cert = txn.open_table(AGENTS_BY_CERT)?;
            // A previous record that does not decode is replaced; its index
            // entry, if stale, is ignored by `agent_by_cert`.
            let old_fingerprint = agents
                .get(a.agent_id.as_str())?
                .and_then(|v| serde_json::from_slice::<AgentRecord>(v.value()).ok())
                .map(|old| old.cert_fingerprint.to_ascii_lowercase());
            if let Some(old) = old_fingerprint.filter(|old| *old != fingerprint) {
                let points_here = by_cert
                    .get(old.as_str())?
                    .is_some_and(|id| id.value() == a.agent_id);
                if points_here {
                    by_cert.remove(old.as_str())?;
                }
            }
            agents.insert(a.agent_id.as_str(), json.as_slice())?;
            if !fingerprint.is_empty() {
                by_cert.insert(fingerprint.as_str(), a.agent_id.as_str())?;
            }
            Ok(())
        })
    }

    /// The agent with this id.
    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.get(AGENTS, "agents", agent_id)
    }

    /// Every agent, sorted by `agent_id` (natural order).
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let mut all: Vec<AgentRecord> = self.all(AGENTS, "agents")?;
        all.sort_by(|a, b| natural_cmp(&a.agent_id, &b.agent_id));
        Ok(all)
    }

    /// The agent whose current certificate has this hex SHA-256 fingerprint
    /// (any case), revoked or not.
    pub fn agent_by_cert(&self, fingerprint_hex: &str) -> Result<Option<AgentRecord>, StoreError> {
        let fingerprint = fingerprint_hex.to_ascii_lowercase();
        if fingerprint.is_empty() {
            return Ok(None);
        }
        let txn = self.db.begin_read()?;
        let agent_id = match txn.open_table(AGENTS_BY_CERT)?.get(fingerprint.as_str())? {
            Some(id) => id.value().to_string(),
            None => return Ok(None),
        };
        let agent: Option<AgentRecord> = read_one(&txn, AGENTS, "agents", &agent_id)?;
        Ok(agent.filter(|a| a.cert_fingerprint.eq_ignore_ascii_case(&fingerprint)))
    }

    /// Stores a command (replacing the record with the same `command_id`).
    pub fn put_command(&self, c: &CommandRecord) -> Result<(), StoreError> {
        let json = encode("commands", c)?;
        self.write(|txn| {
            txn.open_table(COMMANDS)?
                .insert(c.command_id.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    /// The command with this id.
    pub fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.get(COMMANDS, "commands", id)
    }

    /// Every command, sorted by `command_id` (natural order: `cmd-9999` before `cmd-10000`).
    pub fn commands(&self) -> Result<Vec<CommandRecord>, StoreError> {
        let mut all: Vec<CommandRecord> = self.all(COMMANDS, "commands")?;
        all.sort_by(|a, b| natural_cmp(&a.command_id, &b.command_id));
        Ok(all)
    }

    /// The next command sequence number, 1, 2, ...; durable before it is returned,
    /// so a number is never handed out twice, even across crashes.
    pub fn next_command_seq(&self) -> Result<u64, StoreError> {
        self.write(|txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            let next = counters.get(KEY_COMMAND_SEQ)?.map_or(0, |v| v.value()) + 1;
            counters.insert(KEY_COMMAND_SEQ, next)?;
            Ok(next)
        })
    }

    /// Enrollments made with the enrollment token whose SHA-256 is `digest`.
    pub fn token_uses(&self, digest: &str) -> Result<u64, StoreError> {
        let key = format!("{KEY_TOKEN_USES}{digest}");
        let txn = self.db.begin_read()?;
        let counters = txn.open_table(COUNTERS)?;
        Ok(counters.get(key.as_str())?.map_or(0, |v| v.value()))
    }

    /// Takes one use of the enrollment token whose SHA-256 is `digest`, if
    /// it has fewer than `max` (durable before it returns): the uses now,
    /// or `None` when it had `max` already.
    pub fn take_token_use(&self, digest: &str, max: u64) -> Result<Option<u64>, StoreError> {
        let key = format!("{KEY_TOKEN_USES}{digest}");
        self.write(|txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            let used = counters.get(key.as_str())?.map_or(0, |v| v.value());
            if used >= max {
                return Ok(None);
            }
            counters.insert(key.as_str(), used + 1)?;
            Ok(Some(used + 1))
        })
    }

    /// Stores an agent's wake state and, in the same transaction, what
    /// becomes of its queued reconcile task.
    pub fn put_wake(&self, w: &WakeState, task: TaskUpdate<'_>) -> Result<(), StoreError> {
        let json = encode("wake", w)?;
        let task_json = match task {
            TaskUpdate::Put(t) => Some(encode("reconcile_queue", t)?),
            _ => None,
        };
        self.write(|txn| {
            txn.open_table(WAKE)?
                .insert(w.agent_id.as_str(), json.as_slice())?;
            let mut queue = txn.open_table(RECONCILE)?;
            match task {
                TaskUpdate::Keep => {}
                TaskUpdate::Remove => {
                    queue.remove(w.agent_id.as_str())?;
                }
                TaskUpdate::Put(_) => {
                    let j = task_json.as_deref().unwrap_or_default();
                    queue.insert(w.agent_id.as_str(), j)?;
                }
            }
            Ok(())
        })
    }

    /// The wake state of the agent with this id.
    pub fn wake(&self, agent_id: &str) -> Result<Option<WakeState>, StoreError> {
        self.get(WAKE, "wake", agent_id)
    }

    /// Every queued reconcile task, by due time (then agent id).
    pub fn reconcile_tasks(&self) -> Result<Vec<ReconcileTask>, StoreError> {
        let mut all: Vec<ReconcileTask> = self.all(RECONCILE, "reconcile_queue")?;
        all.sort_by(|a, b| {
            a.due_us
                .cmp(&b.due_us)
                .then_with(|| natural_cmp(&a.agent_id, &b.agent_id))
        });
        Ok(all)
    }

    /// Stores an agent's upgrade marker and status, one record in one transaction.
    pub fn put_upgrade(&self, r: &UpgradeRecord) -> Result<(), StoreError> {
        let json = encode("upgrades", r)?;
        self.write(|txn| {
            txn.open_table(UPGRADES)?
                .insert(r.agent_id.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    /// The upgrade marker and status of the agent with this id.
    pub fn upgrade(&self, agent_id: &str) -> Result<Option<UpgradeRecord>, StoreError> {
        self.get(UPGRADES, "upgrades", agent_id)
    }

    /// Every upgrade record, by agent id (natural order).
    pub fn upgrades(&self) -> Result<Vec<UpgradeRecord>, StoreError> {
        let mut all: Vec<UpgradeRecord> = self.all(UPGRADES, "upgrades")?;
        all.sort_by(|a, b| natural_cmp(&a.agent_id, &b.agent_id));
        Ok(all)
    }

    /// Stores a published agent build.
    pub fn put_artifact(&self, a: &Artifact) -> Result<(), StoreError> {
        let json = encode("artifacts", a)?;
        self.write(|txn| {
            txn.open_table(ARTIFACTS)?
                .insert(a.sha256.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    /// The published build whose announced SHA-256 is `sha256`.
    pub fn artifact(&self, sha256: &str) -> Result<Option<Artifact>, StoreError> {
        self.get(ARTIFACTS, "artifacts", sha256)
    }

    /// Runs `f` in a write transaction and commits it durably; aborts it if `f` fails.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        read_one(&self.db.begin_read()?, table, name, key)
    }

    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(decode(name, key.value(), value.value())?);
        }
        Ok(out)
    }
}

fn read_one<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match txn.open_table(table)?.get(key)? {
        Some(value) => decode(name, key, value.value()).map(Some),
        None => Ok(None),
    }
}

fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { table, source })
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

/// Whether the time under `key` is a deadline (a wake's `due_us`, its
/// `checkin_deadline_us`) rather than the time something happened.
fn is_deadline(key: &str) -> bool {
    key == "due_us" || key.ends_with("deadline_us")
}

/// Calls `f` on every unsigned number under a key ending in `_us`, at any
/// depth (an upgrade's `history` holds `at_us`), with its key.
fn visit_times(doc: &mut serde_json::Value, f: &mut dyn FnMut(&str, &mut u64)) {
    match doc {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    serde_json::Value::Number(n) if k.ends_with("_us") => {
                        if let Some(mut t) = n.as_u64() {
                            f(k, &mut t);
                            *n = t.into();
                        }
                    }
                    other => visit_times(other, f),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| visit_times(v, f)),
        _ => {}
    }
}

/// Compares ids so that runs of digits compare as numbers (`a-9` < `a-10`);
/// ties (`a-01` and `a-1`) are broken by plain byte order, keeping the order total.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    fn trim_zeros(s: &[u8]) -> &[u8] {
        let zeros = s.iter().take_while(|&&c| c == b'0').count();
        &s[zeros..]
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let (nx, ny) = (digits(x), digits(y));
                let (vx, vy) = (trim_zeros(&x[..nx]), trim_zeros(&y[..ny]));
                let ord = vx.len().cmp(&vy.len()).then_with(|| vx.cmp(vy));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::fsdisk::FsDisk;
    use std::path::PathBuf;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("simbench-store-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }

        fn disk(&self) -> FsDisk {
            FsDisk::new(&self.0).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn agent(id: &str, fp: &str) -> AgentRecord {
        AgentRecord {
            agent_id: id.into(),
            name: format!("name-{id}"),
            version: "0.6.63".into(),
            cert_fingerprint: fp.into(),
            enrolled_at_us: 1_000,
            last_seen_us: None,
            revoked: false,
            agent_token_sha256: None,
        }
    }

    fn command(id: &str, agent_id: &str) -> CommandRecord {
        CommandRecord {
            command_id: id.into(),
            agent_id: agent_id.into(),
            agent_name: format!("name-{agent_id}"),
            command: "hostname".into(),
            status: CommandStatus::Pending,
            attempts: 0,
            created_us: 5,
            last_offer_us: None,
            acked_us: None,
            completed_us: None,
            exit_code: None,
            output: None,
        }
    }

    #[test]
    fn ca_round_trip_and_debug_hides_the_key() {
        let tmp = TempDir::new("ca");
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        assert_eq!(store.ca().unwrap(), None);
        let ca = CaRecord {
            cert_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_pem: "-----BEGIN PRIVATE KEY----- secret".into(),
        };
        store.put_ca(&ca).unwrap();
        assert_eq!(store.ca().unwrap(), Some(ca.clone()));
        let debug = format!("{ca:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("BEGIN CERTIFICATE"), "{debug}");
    }

    #[test]
    fn a_store_open_in_one_process_is_refused_to_a_second_until_it_closes() {
        let tmp = TempDir::new("in-use");
        let first = Store::open(&tmp.disk(), "server.redb").unwrap();
        first.put_agent(&agent("a1", "fp1")).unwrap();
        let err = Store::open(&tmp.disk(), "server.redb").unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
        assert!(err.to_string().contains("stop that process"), "{err}");
        drop(first);
        let again = Store::open(&tmp.disk(), "server.redb").unwrap();
        assert_eq!(again.agents().unwrap().len(), 1);
    }

    #[test]
    fn agents_round_trip_sorted_and_found_by_cert() {
        let tmp = TempDir::new("agents");
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        assert_eq!(store.agents().unwrap(), vec![]);
        for (id, fp) in [
            ("agent-10", "aa10"),
            ("agent-2", "AA02"),
            ("agent-1", "aa01"),
        ] {
            store.put_agent(&agent(id, fp)).unwrap();
        }
        let ids: Vec<String> = store
            .agents()
            .unwrap()
            .into_iter()
            .map(|a| a.agent_id)
            .collect();
        assert_eq!(ids, ["agent-1", "agent-2", "agent-10"]);
        assert_eq!(
            store.agent("agent-2").unwrap(),
            Some(agent("agent-2", "AA02"))
        );
        assert_eq!(store.agent("agent-3").unwrap(), None);
        // Fingerprints match in any case.
        assert_eq!(
            store.agent_by_cert("aa02").unwrap().map(|a| a.agent_id),
            Some("agent-2".into())
        );
        assert_eq!(store.agent_by_cert("ffff").unwrap(), None);
        assert_eq!(store.agent_by_cert("").unwrap(), None);

        // Re-enrollment with a new certificate: the old one no longer maps.
        let mut updated = agent("agent-1", "bb01");
        updated.last_seen_us = Some(99);
        updated.revoked = true;
        store.put_agent(&updated).unwrap();
        assert_eq!(store.agent_by_cert("aa01").unwrap(), None);
        assert_eq!(store.agent_by_cert("bb01").unwrap(), Some(updated.clone()));
        assert_eq!(store.agent("agent-1").unwrap(), Some(updated));
        assert_eq!(store.agents().unwrap().len(), 3);
    }

    #[test]
    fn commands_round_trip_in_natural_order() {
        let tmp = TempDir::new("commands");
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        for id in ["cmd-10000", "cmd-0002", "cmd-9999", "cmd-0001"] {
            store.put_command(&command(id, "agent-1")).unwrap();
        }
        let ids: Vec<String> = store
            .commands()
            .unwrap()
            .into_iter()
            .map(|c| c.command_id)
            .collect();
        assert_eq!(ids, ["cmd-0001", "cmd-0002", "cmd-9999", "cmd-10000"]);
        let mut c = command("cmd-0002", "agent-1");
        c.status = CommandStatus::Completed;
        c.attempts = 3;
        c.exit_code = Some(0);
        c.output = Some("pst-server\n".into());
        store.put_command(&c).unwrap();
        assert_eq!(store.command("cmd-0002").unwrap(), Some(c));
        assert_eq!(store.command("cmd-0003").unwrap(), None);
        assert_eq!(store.commands().unwrap().len(), 4);
    }

    #[test]
    fn command_seq_counts_from_one() {
        let tmp = TempDir::new("seq");
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        let seqs: Vec<u64> = (0..3).map(|_| store.next_command_seq().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn everything_persists_across_reopen() {
        let tmp = TempDir::new("reopen");
        let ca = CaRecord {
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        {
            let store = Store::open(&tmp.disk(), "data/server.redb").unwrap();
            store.put_ca(&ca).unwrap();
            store.put_agent(&agent("a1", "f1")).unwrap();
            store.put_command(&command("cmd-0001", "a1")).unwrap();
            assert_eq!(store.next_command_seq().unwrap(), 1);
        }
        assert!(tmp.0.join("data/server.redb").is_file());
        let store = Store::open(&tmp.disk(), "data/server.redb").unwrap();
        assert_eq!(store.ca().unwrap(), Some(ca));
        assert_eq!(store.agents().unwrap(), vec![agent("a1", "f1")]);
        assert_eq!(
            store.agent_by_cert("f1").unwrap().map(|a| a.agent_id),
            Some("a1".into())
        );
        assert_eq!(store.commands().unwrap(), vec![command("cmd-0001", "a1")]);
        assert_eq!(store.next_command_seq().unwrap(), 2);
    }

    #[test]
    fn wake_state_and_reconcile_queue_persist_across_reopen() {
        let tmp = TempDir::new("wake");
        let p = crate::wake::WakePolicy::default();
        let mut a = WakeState::new("agent-2", "b");
        let ta = p.handle_wake(&mut a, 10);
        let mut b = WakeState::new("agent-1", "a");
        let tb = p.handle_wake(&mut b, 5);
        {
            let store = Store::open(&tmp.disk(), "server.redb").unwrap();
            store.put_wake(&a, TaskUpdate::Put(&ta)).unwrap();
            store.put_wake(&b, TaskUpdate::Put(&tb)).unwrap();
        }
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        assert_eq!(store.wake("agent-2").unwrap(), Some(a.clone()));
        // Due first, first.
        assert_eq!(store.reconcile_tasks().unwrap(), vec![tb, ta.clone()]);
        b.wake_attempts = 0;
        store.put_wake(&b, TaskUpdate::Remove).unwrap();
        store.put_wake(&a, TaskUpdate::Keep).unwrap();
        assert_eq!(store.reconcile_tasks().unwrap(), vec![ta]);
        assert_eq!(store.wake("agent-1").unwrap(), Some(b));
        assert_eq!(store.wake("agent-3").unwrap(), None);
    }

    #[test]
    fn upgrade_markers_and_artifacts_persist_across_reopen() {
        let tmp = TempDir::new("upgrade");
        let mut r = UpgradeRecord::new("agent-1", "a", "1.0.0", "1.1.0", "abc", 5);
        r.stops_sent = 1;
        r.stop_sent_us = Some(9);
        let art = Artifact::new("1.1.0", None);
        {
            let store = Store::open(&tmp.disk(), "server.redb").unwrap();
            assert_eq!(store.upgrade("agent-1").unwrap(), None);
            store.put_upgrade(&r).unwrap();
            store.put_artifact(&art).unwrap();
        }
        let store = Store::open(&tmp.disk(), "server.redb").unwrap();
        assert_eq!(store.upgrade("agent-1").unwrap(), Some(r.clone()));
        assert_eq!(store.upgrades().unwrap(), vec![r]);
        assert_eq!(store.artifact(&art.sha256).unwrap(), Some(art));
        assert_eq!(store.artifact("1.1.0").unwrap(), None);
    }

    #[test]
    fn creation_goes_through_a_side_file_and_replaces_leftovers() {
        let tmp = TempDir::new("create");
        let disk = tmp.disk();
        // A leftover of a crash during an earlier creation, and an empty store file.
        proto::files::write(&disk, "server.redb.new", b"half-built").unwrap();
        proto::files::write(&disk, "server.redb", b"").unwrap();
        let store = Store::open(&disk, "server.redb").unwrap();
        assert_eq!(disk.list().unwrap(), ["server.redb"]);
        assert_eq!(store.next_command_seq().unwrap(), 1);
        drop(store);
        // Opening an existing store does not create it again.
        let store = Store::open(&disk, "server.redb").unwrap();
        assert_eq!(store.next_command_seq().unwrap(), 2);
        assert_eq!(disk.list().unwrap(), ["server.redb"]);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_with_advice() {
        let tmp = TempDir::new("garbage");
        let disk = tmp.disk();
        proto::files::write(&disk, "server.redb", &[0x5a; 9000]).unwrap();
        let err = Store::open(&disk, "server.redb").unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open store server.redb"), "{msg}");
        assert!(msg.contains("move it away"), "{msg}");
    }

    #[test]
    fn a_bad_path_is_a_file_error() {
        let tmp = TempDir::new("badpath");
        let err = Store::open(&tmp.disk(), "../server.redb").unwrap_err();
        assert!(matches!(err, StoreError::File { .. }), "{err:?}");
        assert!(err.to_string().contains("writable"), "{err}");
    }

    // Rewrites the schema version, as a server of that version left it.
    fn set_schema(store: &Store, version: u64) {
        store
            .write(|txn| {
                txn.open_table(COUNTERS)?.insert(KEY_SCHEMA, version)?;
                Ok(())
            })
            .unwrap();
    }

    const NOW: u64 = 1_780_000_000_000_000; // 2026-05-28, Unix µs

    #[test]
    fn a_store_of_process_uptimes_is_moved_onto_the_calendar_once() {
        let tmp = TempDir::new("uptime");
        let disk = tmp.disk();
        {
            // Built the old way: every time counts from the old process's start.
            let store = Store::open(&disk, "server.redb").unwrap();
            let mut a = agent("a-1", "aa");
            a.enrolled_at_us = 5_000_000;
            a.last_seen_us = Some(60_000_000);
            store.put_agent(&a).unwrap();
            let mut b = agent("a-2", "bb");
            b.name = a.name.clone();
            b.enrolled_at_us = 40_000_000; // the newer of the two `name-a-1`
            store.put_agent(&b).unwrap();
            let mut c = command("cmd-0001", "a-1");
            c.created_us = 50_000_000;
            c.last_offer_us = Some(55_000_000);
            store.put_command(&c).unwrap();
            let mut w = WakeState::new("a-1", "name-a-1");
            w.last_wake_us = Some(62_000_000);
            w.checkin_deadline_us = Some(92_000_000);
            let task = ReconcileTask {
                agent_id: "a-1".into(),
                agent_name: "name-a-1".into(),
                attempt: 1,
                due_us: 92_000_000, // 27 s after the last thing the old server did
            };
            store.put_wake(&w, TaskUpdate::Put(&task)).unwrap();
            let mut u = UpgradeRecord::new("a-1", "name-a-1", "1.0.0", "1.1.0", "ab", 63_000_000);
            u.stop_sent_us = Some(65_000_000);
            store.put_upgrade(&u).unwrap();
            set_schema(&store, 1);
        }
        let store = Store::open(&disk, "server.redb").unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        let m = store
            .migrate_times(NOW)
            .unwrap()
            .expect("a version-1 store is migrated");
        assert_eq!(m.last_uptime_us, 65_000_000);
        assert_eq!(m.shift_us, NOW - 65_000_000);
        assert_eq!((m.records, m.values), (6, 10), "{m:?}");
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let at = |uptime: u64| NOW - 65_000_000 + uptime;
        let a = store.agent("a-1").unwrap().unwrap();
        assert_eq!(a.enrolled_at_us, at(5_000_000));
        assert_eq!(a.last_seen_us, Some(at(60_000_000)));
        // The newest enrollment of the name is still the newest.
        assert!(store.agent("a-2").unwrap().unwrap().enrolled_at_us > a.enrolled_at_us);
        let c = store.command("cmd-0001").unwrap().unwrap();
        assert_eq!(
            (c.created_us, c.last_offer_us),
            (at(50_000_000), Some(at(55_000_000)))
        );
        let tasks = store.reconcile_tasks().unwrap();
        // Due 27 s from now, not at uptime 92 s of a process that is gone.
        assert_eq!(tasks[0].due_us, NOW + 27_000_000);
        let w = store.wake("a-1").unwrap().unwrap();
        assert_eq!(w.checkin_deadline_us, Some(NOW + 27_000_000));
        let u = store.upgrade("a-1").unwrap().unwrap();
        assert_eq!(u.stop_sent_us, Some(NOW));
        assert!(u.history.iter().all(|h| h.at_us == at(63_000_000)), "{u:?}");
        // Once is enough: a version-2 store is left alone.
        assert_eq!(store.migrate_times(NOW + 1).unwrap(), None);
        drop(store);
        let store = Store::open(&disk, "server.redb").unwrap();
        assert_eq!(store.migrate_times(NOW + 2).unwrap(), None);
        assert_eq!(
            store.agent("a-1").unwrap().unwrap().enrolled_at_us,
            at(5_000_000)
        );
    }

    #[test]
    fn calendar_times_in_a_version_1_store_stay_and_a_new_store_is_version_2() {
        let tmp = TempDir::new("calendar-v1");
        let disk = tmp.disk();
        let store = Store::open(&disk, "server.redb").unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.migrate_times(NOW).unwrap(), None);
        // A later build of version 1 already wrote Unix microseconds.
        let mut a = agent("a-1", "aa");
        a.enrolled_at_us = NOW - 3_600_000_000;
        store.put_agent(&a).unwrap();
        set_schema(&store, 1);
        let m = store.migrate_times(NOW).unwrap().unwrap();
        assert_eq!((m.records, m.values), (0, 0));
        assert_eq!(store.agent("a-1").unwrap().unwrap(), a);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_store_of_a_newer_schema_is_refused_with_advice() {
        let tmp = TempDir::new("newer");
        let disk = tmp.disk();
        set_schema(
            &Store::open(&disk, "server.redb").unwrap(),
            SCHEMA_VERSION + 1,
        );
        let err = Store::open(&disk, "server.redb").unwrap_err();
        assert!(err.to_string().contains("run a newer server"), "{err}");
    }

    #[test]
    fn natural_order() {
        let mut ids = vec!["b", "a-10", "a-9", "a-09", "a", "a-1x", "a-1", "10", "9"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            ids,
            ["9", "10", "a", "a-1", "a-1x", "a-09", "a-9", "a-10", "b"]
        );
    }
}
