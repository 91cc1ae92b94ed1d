//! The plugins screen: the daemon's plugins as it last listed them. Read-only: grants are
//! changed with `runbook plugin grant|revoke`, which the screen names.

use runbook_protocol::v1::Plugin;

/// The plugins screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginsView {
    /// Loaded plugins by kind, then refused files, once the daemon answered.
    pub plugins: Option<Vec<Plugin>>,
    /// The selected row.
    pub selected: usize,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
}
