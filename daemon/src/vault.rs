//! The secret vault: named values stored age-encrypted in sled, the X25519 key that decrypts
//! them (`<data dir>/vault.key`), and the append-only audit trail of every change.
//!
//! Values are decrypted only by [`Vault::reveal`], at the moment the host needs one; nothing in
//! this module logs a value or puts one in an error.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

pub use crate::store::{AuditAction, AuditEntry};
use crate::store::{SecretRecord, SecretRecords, Store, StoreError, now_ms};
use age::x25519::{Identity, Recipient};
use secrecy::zeroize::Zeroize as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "vault.key";
/// The longest secret name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// The largest secret value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// What can go wrong with the vault. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot {action} the vault key {}: {source}", path.display())]
    KeyIo {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing the vault key {}: it is open to group or others (mode {mode:03o}); fix it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error(
        "refusing the vault key {}: it belongs to uid {owner}, but runbookd runs as uid {uid}; it must be the daemon user's own file (mode 600)",
        path.display()
    )]
    KeyOwner { path: PathBuf, owner: u32, uid: u32 },
    #[error(
        "the vault key {} is not an age identity (one line `AGE-SECRET-KEY-1...`); {hint}",
        path.display()
    )]
    KeyInvalid { path: PathBuf, hint: &'static str },
    #[error(
        "the vault key {} is missing, but the database holds {count} secret(s) encrypted with it; restore the key from the backup taken with the database (if it is lost for good, so are the values: create a new key with `age-keygen -o {}`, `chmod 600` it, and set each secret again)",
        path.display(),
        path.display()
    )]
    KeyLost { path: PathBuf, count: usize },
    #[error(
        "invalid secret name {shown}: {reason}; use letters, digits and `_`, not starting with a digit, at most {MAX_NAME_LEN} characters"
    )]
    InvalidName { shown: String, reason: &'static str },
    #[error("the value of secret `{name}` is empty")]
    EmptyValue { name: String },
    #[error("the value of secret `{name}` is larger than {} KiB", MAX_VALUE_LEN / 1024)]
    ValueTooLarge { name: String },
    #[error("no secret named `{0}`")]
    NotFound(String),
    #[error(
        "secret `{name}` cannot be decrypted with the current vault key (it was set with another key); set it again with `runbook secret set {name}`"
    )]
    Undecryptable { name: String },
    #[error("cannot encrypt secret `{name}`: {reason}")]
    Encrypt { name: String, reason: String },
    #[error("corrupt vault record {what} in the database: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is known about a secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Who set the current value, as `user (uid N)`.
    pub updated_by: String,
}

/// A cloneable handle to the vault.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Identity,
    recipient: Recipient,
    /// Ties placeholders to this key: stable across restarts, unguessable without the key.
    nonce: String,
    records: SecretRecords,
    /// For flushes, which go through the store's one writer thread.
    store: Store,
    /// Held while a change and its audit entry are written, so that audit sequence numbers are
    /// gap-free and a removal cannot race a set of the same name.
    write_lock: Mutex<()>,
}

// By hand, so that no derive can ever print the key.
impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("secrets", &self.inner.records.count())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the vault stored in `store`, with its key in `<data_dir>/vault.key`; creates the
    /// key (mode 0600) when there is none yet. Refuses a key file that group or others may
    /// access, or that another user owns.
    pub fn open(store: &Store, data_dir: &Path) -> Result<Self, VaultError> {
        let records = store.secret_records()?;
        let path = data_dir.join(KEY_FILE);
        let identity = match read_key(&path)? {
            Some(identity) => identity,
            None if records.count() > 0 => {
                // A new key could not decrypt the values already stored: say so now rather
                // than at the first run that needs one.
                return Err(VaultError::KeyLost {
                    path,
                    count: records.count(),
                });
            }
            None => create_key(&path)?,
        };
        let nonce = {
            let text = identity.to_string();
            let digest = Sha256::digest(text.expose_secret().as_bytes());
            hex::encode(digest)[..12].to_owned()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                recipient: identity.to_public(),
                identity,
                nonce,
                records,
                store: store.clone(),
                write_lock: Mutex::new(()),
            }),
        })
    }

    /// The names of every secret, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.records.names().unwrap_or_else(|err| {
            tracing::error!(error = %err, "cannot read the secret names");
            Vec::new()
        })
    }

    /// The value of secret `name`, decrypted now; `None` when there is no such secret.
    pub fn reveal(&self, name: &str) -> Result<Option<SecretString>, VaultError> {
        let Some(record) = self.inner.records.get(name)? else {
            return Ok(None);
        };
        let ciphertext = hex::decode(&record.ciphertext).map_err(|err| VaultError::Corrupt {
            what: format!("of secret `{name}`"),
            reason: err.to_string(),
        })?;
        let plaintext = age::decrypt(&self.inner.identity, &ciphertext).map_err(|_| {
            VaultError::Undecryptable {
                name: name.to_owned(),
            }
        })?;
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(Some(SecretString::from(text))),
            Err(err) => {
                err.into_bytes().zeroize();
                Err(VaultError::Corrupt {
                    what: format!("of secret `{name}`"),
                    reason: "the value is not UTF-8".into(),
                })
            }
        }
    }

    /// The opaque text that stands for secret `name` where a plugin could see it; the host
    /// replaces it with the value only inside its own http and process calls.
    pub fn placeholder(&self, name: &str) -> String {
        format!("__rb_secret.{}.{name}__", self.inner.nonce)
    }

    /// Every secret's name with its placeholder, sorted by name.
    pub fn placeholders(&self) -> Vec<(String, String)> {
        self.names()
            .into_iter()
            .map(|name| {
                let placeholder = self.placeholder(&name);
                (name, placeholder)
            })
            .collect()
    }

    /// Stores `value` as secret `name` (creating or replacing it) and records who did it;
    /// returns once both are on disk.
    pub async fn set(
        &self,
        name: &str,
        value: SecretString,
        by: &str,
    ) -> Result<SecretInfo, VaultError> {
        validate_name(name)?;
        let plaintext = value.expose_secret().as_bytes();
        if plaintext.is_empty() {
            return Err(VaultError::EmptyValue { name: name.into() });
        }
        if plaintext.len() > MAX_VALUE_LEN {
            return Err(VaultError::ValueTooLarge { name: name.into() });
        }
        let ciphertext =
            age::encrypt(&self.inner.recipient, plaintext).map_err(|err| VaultError::Encrypt {
                name: name.into(),
                reason: err.to_string(),
            })?;
        drop(value);
        let info = {
            let _guard = lock(&self.inner.write_lock);
            let now = now_ms();
            let created_at = self
                .inner
                .records
                .get(name)?
                .map_or(now, |old| old.created_at);
            let record = SecretRecord {
                ciphertext: hex::encode(ciphertext),
                created_at,
                updated_at: now,
                updated_by: by.to_owned(),
            };
            self.commit(name, Some(&record), AuditAction::Set, now, by)?;
            info(name, &record)
        };
        // Acknowledged only once durable: the caller may rely on the value at once.
        self.inner.store.flush().await?;
        Ok(info)
    }

    /// Deletes secret `name` and records who did it; returns once both are on disk.
    pub async fn remove(&self, name: &str, by: &str) -> Result<(), VaultError> {
        {
            let _guard = lock(&self.inner.write_lock);
            if !self.inner.records.contains(name)? {
                return Err(VaultError::NotFound(name.to_owned()));
            }
            self.commit(name, None, AuditAction::Rm, now_ms(), by)?;
        }
        self.inner.store.flush().await?;
        Ok(())
    }

    /// Every secret, without its value, sorted by name.
    pub fn list(&self) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(self
            .inner
            .records
            .list()?
            .iter()
            .map(|(name, record)| info(name, record))
            .collect())
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, VaultError> {
        Ok(self.inner.records.audit()?)
    }

    /// Writes (or, with `None`, deletes) a secret with its audit entry, so that no change is
    /// ever left unaudited. Called with `write_lock` held.
    fn commit(
        &self,
        name: &str,
        record: Option<&SecretRecord>,
        action: AuditAction,
        at: i64,
        by: &str,
    ) -> Result<(), VaultError> {
        let entry = AuditEntry {
            at,
            action,
            name: name.to_owned(),
            by: by.to_owned(),
        };
        Ok(self.inner.records.change(name, record, &entry)?)
    }
}

/// Checks a secret name: it must be usable as `{{ secrets.NAME }}` in a template.
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    let invalid = |reason| {
        // A name too long to be one may be a value pasted in the wrong place: never echo it.
        let shown = if name.chars().count() > MAX_NAME_LEN {
            format!("({} characters)", name.chars().count())
        } else {
            format!("`{name}`")
        };
        Err(VaultError::InvalidName { shown, reason })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return invalid("it is empty"),
        Some(first) if first.is_ascii_digit() => return invalid("it starts with a digit"),
        Some(_) => {}
    }
    if name.chars().count() > MAX_NAME_LEN {
        return invalid("it is too long");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("it has a character other than a letter, a digit or `_`");
    }
    Ok(())
}

fn info(name: &str, record: &SecretRecord) -> SecretInfo {
    SecretInfo {
        name: name.to_owned(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        updated_by: record.updated_by.clone(),
    }
}

fn lock(mutex: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    // The lock guards no data, only the order of writes: a poisoned one is still good.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the key at `path`, after checking who may read it; `None` when there is no file.
fn read_key(path: &Path) -> Result<Option<Identity>, VaultError> {
    let io = |action| {
        move |source| VaultError::KeyIo {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io("open")(err)),
    };
    // Checked on the open file, so that what is checked is what is read.
    let meta = file.metadata().map_err(io("inspect"))?;
    if !meta.is_file() {
        return Err(VaultError::KeyInvalid {
            path: path.to_owned(),
            hint: "it is not a regular file",
        });
    }
    let uid = rustix::process::getuid().as_raw();
    if meta.uid() != uid {
        return Err(VaultError::KeyOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyMode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    let read = file.read_to_string(&mut text).map_err(io("read"));
    let parsed = read.and_then(|_| parse_key(path, &text));
    text.zeroize();
    parsed.map(Some)
}

/// The identity in an age identity file: `#` comments, blank lines and one key line.
fn parse_key(path: &Path, text: &str) -> Result<Identity, VaultError> {
    let invalid = |hint| VaultError::KeyInvalid {
        path: path.to_owned(),
        hint,
    };
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let Some(line) = keys.next() else {
        return Err(invalid(
            "it holds no key (a start of runbookd interrupted while creating it leaves it empty: if you have set no secret yet, delete it)",
        ));
    };
    if keys.next().is_some() {
        return Err(invalid("it holds more than one line that is not a comment"));
    }
    // The parser's message would say nothing more useful, and never include the key.
    Identity::from_str(line).map_err(|_| invalid("its key line does not parse"))
}

/// Generates a key and writes it to `path`, which must not exist: an existing key is never
/// replaced, since every value stored with it would be lost.
fn create_key(path: &Path) -> Result<Identity, VaultError> {
    let identity = Identity::generate();
    let mut text = format!(
        "# runbookd vault key: decrypts the secrets in the database next to it.\n\
         # Keep it mode 600, and back it up together with the database.\n\
         # created: {}\n\
         # public key: {}\n\
         {}\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        identity.to_public(),
        identity.to_string().expose_secret(),
    );
    let written = write_new(path, text.as_bytes());
    text.zeroize();
    written.map_err(|(action, source)| VaultError::KeyIo {
        action,
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(path = %path.display(), "created a new vault key");
    Ok(identity)
}

fn write_new(path: &Path, content: &[u8]) -> Result<(), (&'static str, std::io::Error)> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| ("create", err))?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(err) = written {
        // We created it: an empty key would stop every later start, so take it away again.
        let _ = std::fs::remove_file(path);
        return Err(("write", err));
    }
    // The key is worth as much as every value encrypted with it: make its name durable too.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| ("sync the directory of", err))?;
    }
    Ok(())
}

/// The vault as plugin calls see it: placeholders for templates, values only for the host.
impl crate::plugins::SecretSource for Vault {
    fn placeholders(&self) -> Vec<(String, String)> {
        Vault::placeholders(self)
    }

    fn reveal(&self, name: &str) -> Result<Option<SecretString>, String> {
        Vault::reveal(self, name).map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        Fixture { dir, store }
    }

    impl Fixture {
        fn vault(&self) -> Result<Vault, VaultError> {
            Vault::open(&self.store, self.dir.path())
        }

        fn key(&self) -> PathBuf {
            self.dir.path().join(KEY_FILE)
        }
    }

    const VALUE: &str = "hunter2-correct-horse-battery";

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    #[tokio::test]
    async fn values_round_trip_and_survive_a_reopen() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        let info = vault.set("API_TOKEN", secret(VALUE), "ana").await.unwrap();
        assert_eq!(info.name, "API_TOKEN");
        assert_eq!(info.updated_by, "ana");
        assert_eq!(info.created_at, info.updated_at);
        let revealed = vault.reveal("API_TOKEN").unwrap().unwrap();
        assert_eq!(revealed.expose_secret(), VALUE);
        assert!(vault.reveal("OTHER").unwrap().is_none());

        let placeholder = vault.placeholder("API_TOKEN");
        drop(vault);
        let vault = fx.vault().unwrap();
        assert_eq!(
            vault.reveal("API_TOKEN").unwrap().unwrap().expose_secret(),
            VALUE
        );
        // The same key gives the same placeholders after a restart.
        assert_eq!(vault.placeholder("API_TOKEN"), placeholder);
    }

    #[tokio::test]
    async fn a_new_value_keeps_the_creation_time() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        let first = vault.set("A", secret("one"), "ana").await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = vault.set("A", secret("two"), "bo").await.unwrap();
        assert_eq!(second.created_at, first.created_at);
        assert!(second.updated_at > first.updated_at);
        assert_eq!(second.updated_by, "bo");
        assert_eq!(vault.reveal("A").unwrap().unwrap().expose_secret(), "two");
        assert_eq!(vault.list().unwrap(), vec![second]);
    }

    #[test]
    fn the_key_is_created_private_and_never_replaced() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        let meta = std::fs::metadata(fx.key()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(fx.key()).unwrap();
        assert!(text.contains("\nAGE-SECRET-KEY-1"), "{text}");
        let placeholder = vault.placeholder("X");
        drop(vault);
        fx.vault().unwrap();
        assert_eq!(std::fs::read_to_string(fx.key()).unwrap(), text);
        assert_eq!(fx.vault().unwrap().placeholder("X"), placeholder);
    }

    #[test]
    fn a_key_open_to_others_is_refused() {
        let fx = fixture();
        drop(fx.vault().unwrap());
        std::fs::set_permissions(fx.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = fx.vault().unwrap_err();
        assert!(
            matches!(err, VaultError::KeyMode { mode: 0o644, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&fx.key().display().to_string()),
            "{message}"
        );
        assert!(message.contains("mode 644"), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", fx.key().display())),
            "{message}"
        );
        // Group-readable only is refused as well.
        std::fs::set_permissions(fx.key(), std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(fx.vault(), Err(VaultError::KeyMode { .. })));
    }

    #[test]
    fn a_key_of_another_user_is_refused() {
        // Only root can give a file away; elsewhere this case cannot be set up.
        if rustix::process::getuid().as_raw() != 0 {
            return;
        }
        let fx = fixture();
        drop(fx.vault().unwrap());
        std::os::unix::fs::chown(fx.key(), Some(54_321), None).unwrap();
        let err = fx.vault().unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::KeyOwner {
                    owner: 54_321,
                    uid: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("uid 54321"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_one_is_refused_and_kept() {
        let fx = fixture();
        std::fs::write(fx.key(), "").unwrap();
        std::fs::set_permissions(fx.key(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = fx.vault().unwrap_err();
        assert!(matches!(err, VaultError::KeyInvalid { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(fx.key()).unwrap(), "");
    }

    #[tokio::test]
    async fn a_lost_key_is_not_silently_replaced() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        vault.set("A", secret(VALUE), "ana").await.unwrap();
        drop(vault);
        std::fs::remove_file(fx.key()).unwrap();
        let err = fx.vault().unwrap_err();
        assert!(
            matches!(err, VaultError::KeyLost { count: 1, .. }),
            "{err:?}"
        );
        assert!(!fx.key().exists());
    }

    #[tokio::test]
    async fn the_database_holds_no_plaintext() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        vault.set("A", secret(VALUE), "ana").await.unwrap();
        for (_, record) in fx.store.secret_records().unwrap().list().unwrap() {
            let raw = serde_json::to_string(&record).unwrap();
            assert!(!raw.contains(VALUE), "{raw}");
            assert!(!raw.contains(&hex::encode(VALUE)), "{raw}");
        }
        fx.store.flush().await.unwrap();
        for file in files(&fx.dir.path().join("db")) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
                "{} holds the value",
                file.display()
            );
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn every_change_is_audited_in_order() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        vault.set("B", secret("1"), "ana").await.unwrap();
        vault.set("A", secret("2"), "bo").await.unwrap();
        vault.remove("B", "cy").await.unwrap();
        let err = vault.remove("B", "cy").await.unwrap_err();
        assert!(
            matches!(err, VaultError::NotFound(ref n) if n == "B"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "no secret named `B`");
        let trail: Vec<_> = vault
            .audit()
            .unwrap()
            .into_iter()
            .map(|e| (e.action.as_str(), e.name, e.by))
            .collect();
        assert_eq!(
            trail,
            [
                ("set", "B".to_owned(), "ana".to_owned()),
                ("set", "A".to_owned(), "bo".to_owned()),
                ("rm", "B".to_owned(), "cy".to_owned()),
            ]
        );
        assert_eq!(vault.names(), ["A"]);
        assert_eq!(vault.list().unwrap().len(), 1);
        assert!(vault.reveal("B").unwrap().is_none());
    }

    #[tokio::test]
    async fn names_are_sorted_and_placeholders_opaque() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        for name in ["b_2", "A", "_x"] {
            vault.set(name, secret(VALUE), "ana").await.unwrap();
        }
        assert_eq!(vault.names(), ["A", "_x", "b_2"]);
        let placeholders = vault.placeholders();
        assert_eq!(placeholders.len(), 3);
        let (name, placeholder) = &placeholders[0];
        assert_eq!(name, "A");
        assert!(placeholder.starts_with("__rb_secret."), "{placeholder}");
        assert!(placeholder.ends_with(".A__"), "{placeholder}");
        let nonce = &placeholder["__rb_secret.".len()..placeholder.len() - ".A__".len()];
        assert_eq!(nonce.len(), 12);
        assert!(nonce.chars().all(|c| c.is_ascii_hexdigit()), "{nonce}");
        // Another key, another nonce.
        let other = fixture();
        assert_ne!(other.vault().unwrap().placeholder("A"), *placeholder);
    }

    #[test]
    fn names_are_checked() {
        for good in ["A", "_", "api_token", "X9", &"a".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "9A",
            "a-b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(
                matches!(validate_name(bad), Err(VaultError::InvalidName { .. })),
                "{bad}"
            );
        }
        let long = "s".repeat(MAX_NAME_LEN + 1);
        let message = validate_name(&long).unwrap_err().to_string();
        assert!(!message.contains(&long), "{message}");
    }

    #[tokio::test]
    async fn values_are_checked_without_being_echoed() {
        let fx = fixture();
        let vault = fx.vault().unwrap();
        let err = vault.set("A", secret(""), "ana").await.unwrap_err();
        assert!(matches!(err, VaultError::EmptyValue { .. }), "{err:?}");
        let big = "v".repeat(MAX_VALUE_LEN + 1);
        let err = vault.set("A", secret(&big), "ana").await.unwrap_err();
        assert!(matches!(err, VaultError::ValueTooLarge { .. }), "{err:?}");
        assert!(!err.to_string().contains("vvvv"));
        vault
            .set("A", secret(&"v".repeat(MAX_VALUE_LEN)), "ana")
            .await
            .unwrap();
        let err = vault.set("a-b", secret(VALUE), "ana").await.unwrap_err();
        assert!(!err.to_string().contains(VALUE));
        assert!(vault.audit().unwrap().len() == 1);
    }
}
