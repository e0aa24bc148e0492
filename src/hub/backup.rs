//! Online backup of the running hub (the copy's format and the restore: `crate::backup`).

use std::path::Path;

use super::{Hub, HubError};
use crate::backup::{DB_DIR, MANIFEST, Manifest};

impl Hub {
    /// Backs the running hub up into `to`, which must be an absolute path that does not
    /// exist yet (a backup never overwrites anything). Returns the manifest written.
    pub fn backup(&self, to: &Path) -> Result<Manifest, HubError> {
        if !to.is_absolute() {
            return Err(HubError::Invalid(format!(
                "the backup directory must be an absolute path, not {}",
                to.display()
            )));
        }
        if to.exists() {
            return Err(HubError::Invalid(format!(
                "{} exists already: a backup goes into a new directory",
                to.display()
            )));
        }
        let io = |what: &str, e: std::io::Error| {
            HubError::Invalid(format!("backup into {}: {what}: {e}", to.display()))
        };
        std::fs::create_dir_all(to).map_err(|e| io("cannot create it", e))?;
        // The head first: everything it covers is durable, so the checkpoint holds it.
        let head = self.tree_head()?;
        self.checkpoint(&to.join(DB_DIR))?;
        let manifest = Manifest::describe(to, head, self.notary_certificate())
            .map_err(|e| io("cannot read the copy back", e))?;
        manifest
            .write(&to.join(MANIFEST))
            .map_err(|e| io("cannot write the manifest", e))?;
        tracing::info!(dir = %to.display(), tree_size = manifest.tree_size, files = manifest.files.len(), "backup written");
        Ok(manifest)
    }
}
