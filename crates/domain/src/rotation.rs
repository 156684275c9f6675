//! Re-encrypting stored credentials under a new primary key (`taxbridge encryption rotate`) and
//! counting which key seals what (`status`, `retire`): the operator's door to sealed
//! credentials. It reads and rewrites them only through [`ConnectionStore`]'s two rotation
//! methods, with a compare-and-swap per row, so it is safe while servers run.

use crate::{
    connections::{credentials_binding, open_bound, ConnectionStore, SealedCredentials},
    crypto::{CryptoError, KeyRing},
    ids::ConnectionId,
    store::StoreError,
};
use std::{collections::BTreeMap, sync::Arc};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the credentials of {0} could not be opened with any key of the ring: {1}")]
    Unreadable(ConnectionId, #[source] CryptoError),
    #[error("credentials kept changing under the rotation; run it again")]
    KeptChanging,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct KeyRotation {
    store: Arc<dyn ConnectionStore>,
}

/// Rows read per page.
const PAGE: u32 = 500;

impl KeyRotation {
    pub fn new<S: ConnectionStore>(store: Arc<S>) -> Self {
        Self { store }
    }

    /// Re-encrypts every stored credential under `ring`'s primary key. Compare-and-swap per
    /// row, so a credential a running server rewrote meanwhile is read again, not overwritten;
    /// passes repeat until none is left under another key. Returns how many were re-encrypted.
    pub async fn reseal_all(&self, ring: &KeyRing) -> Result<u64, RotationError> {
        let mut done = 0;
        for _pass in 0..10 {
            let mut left = 0;
            let mut after = None;
            loop {
                let page = self.store.sealed_credentials(after.as_ref(), PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                for SealedCredentials {
                    id,
                    sealed,
                    base_url,
                } in page
                {
                    if KeyRing::sealed_with(&sealed) == Some(ring.primary_id()) {
                        continue;
                    }
                    let plaintext = open_bound(
                        |sealed, bound_to| ring.open(sealed, bound_to),
                        &sealed,
                        &id,
                        base_url.as_deref(),
                    )
                    .map_err(|err| RotationError::Unreadable(id.clone(), err))?;
                    let resealed =
                        ring.seal(&plaintext, &credentials_binding(&id, base_url.as_deref()));
                    if self.store.swap_credentials(&id, &sealed, &resealed).await? {
                        done += 1;
                    } else {
                        left += 1;
                    }
                }
            }
            if left == 0 {
                return Ok(done);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Err(RotationError::KeptChanging)
    }

    /// How many stored credentials each key id seals (`(unreadable)` for any that names none).
    pub async fn key_ids_in_use(&self) -> Result<BTreeMap<String, u64>, RotationError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.store.sealed_credentials(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for SealedCredentials { sealed, .. } in page {
                let id = KeyRing::sealed_with(&sealed)
                    .unwrap_or("(unreadable)")
                    .to_owned();
                *counts.entry(id).or_default() += 1;
            }
        }
        Ok(counts)
    }
}
