//! The vault's records: each secret by name (its ciphertext and who set it), and the
//! append-only trail of changes. A change and its trail entry are written in one transaction,
//! so that no change is ever left unaudited. What the records mean (encryption, names, who may
//! read them) is the vault's; this module only keeps them.

use serde::{Deserialize, Serialize};
use sled::Transactional as _;

use super::{Store, StoreError};

/// Tree of `name -> SecretRecord`.
const SECRETS_TREE: &str = "secrets";
/// Tree of `big-endian u64 sequence -> AuditEntry`, only ever appended to.
const AUDIT_TREE: &str = "secrets_audit";

/// A secret as stored: the age ciphertext (hex) and its metadata. Never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub ciphertext: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Who set the current value, as `user (uid N)`.
    pub updated_by: String,
}

/// What was done to a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Set,
    Rm,
}

impl AuditAction {
    /// `set` or `rm`, as the CLI and the API show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Rm => "rm",
        }
    }
}

/// One change to the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at: i64,
    pub action: AuditAction,
    pub name: String,
    pub by: String,
}

/// The vault's trees in the daemon's database; writes share its log, its writer thread's
/// flushes and its health (a database that refuses writes refuses these too, with the same message).
#[derive(Clone)]
pub struct SecretRecords {
    store: Store,
    secrets: sled::Tree,
    audit: sled::Tree,
}

impl Store {
    /// The secret vault's records.
    pub fn secret_records(&self) -> Result<SecretRecords, StoreError> {
        Ok(SecretRecords {
            store: self.clone(),
            secrets: self.inner.db.open_tree(SECRETS_TREE)?,
            audit: self.inner.db.open_tree(AUDIT_TREE)?,
        })
    }
}

impl SecretRecords {
    /// How many secrets are stored.
    pub fn count(&self) -> usize {
        self.secrets.len()
    }

    /// Every secret's name, sorted (sled iterates keys in byte order, which for these ASCII
    /// names is sorted order).
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        self.secrets
            .iter()
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect()
    }

    /// Secret `name`'s record, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        Ok(self
            .secrets
            .get(name.as_bytes())?
            .map(|raw| serde_json::from_slice(&raw))
            .transpose()?)
    }

    /// Whether secret `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.secrets.contains_key(name.as_bytes())?)
    }

    /// Every secret's name and record, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, SecretRecord)>, StoreError> {
        self.secrets
            .iter()
            .map(|item| {
                let (key, raw) = item?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    serde_json::from_slice(&raw)?,
                ))
            })
            .collect()
    }

    /// The trail, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit
            .iter()
            .values()
            .map(|raw| Ok(serde_json::from_slice(&raw?)?))
            .collect()
    }

    /// Writes (or, with `None`, deletes) secret `name` and appends `entry` to the trail, in
    /// one transaction; not yet flushed. The caller serializes changes, so that trail numbers
    /// are gap-free.
    pub fn change(
        &self,
        name: &str,
        record: Option<&SecretRecord>,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        if let Some(refusal) = self.store.inner.health.refusal() {
            return Err(refusal);
        }
        let seq = match self.audit.last()? {
            Some((key, _)) => {
                let bytes: [u8; 8] = key.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(serde::de::Error::custom(format!(
                        "a key of the secrets' audit trail is {} bytes instead of 8",
                        key.len()
                    )))
                })?;
                u64::from_be_bytes(bytes) + 1
            }
            None => 1,
        };
        let entry = serde_json::to_vec(entry)?;
        let record = record.map(serde_json::to_vec).transpose()?;
        (&self.secrets, &self.audit)
            .transaction(|(secrets, audit)| {
                match &record {
                    Some(record) => secrets.insert(name.as_bytes(), record.as_slice())?,
                    None => secrets.remove(name.as_bytes())?,
                };
                audit.insert(&seq.to_be_bytes(), entry.as_slice())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|err| self.store.transaction_failed(err))
    }
}
