//! What the operator granted each user plugin with `runbook plugin grant`, by step kind. The
//! record's meaning is the plugin host's; this module only keeps it, durably.

use super::{Store, StoreError};

/// Tree of `kind -> JSON grant`.
const PLUGIN_GRANTS_TREE: &str = "plugin_grants";

impl Store {
    /// Every stored grant, by kind.
    pub fn plugin_grants<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let tree = self.inner.db.open_tree(PLUGIN_GRANTS_TREE)?;
        tree.iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    serde_json::from_slice(&value)?,
                ))
            })
            .collect()
    }

    /// Replaces `kind`'s grant (`None` removes it) and returns once it is on disk.
    pub async fn set_plugin_grant<T: serde::Serialize>(
        &self,
        kind: &str,
        grant: Option<&T>,
    ) -> Result<(), StoreError> {
        let tree = self.inner.db.open_tree(PLUGIN_GRANTS_TREE)?;
        match grant {
            Some(grant) => {
                tree.insert(kind.as_bytes(), serde_json::to_vec(grant)?)?;
            }
            None => {
                tree.remove(kind.as_bytes())?;
            }
        }
        self.flush().await
    }
}
