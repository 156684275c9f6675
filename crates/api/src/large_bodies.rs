//! Slots for request bodies over `max_body_bytes` (`uploadConnectionFile`'s inline files):
//! a few at once for the whole server, and at most two per API key, so one integrator's burst
//! leaves room for others. Part of the shared ground ([`crate::ground::AppState`] holds them);
//! the endpoint takes a slot before it reads a large body.

/// Large bodies read at once; more wait their turn, so they cost at most this many times
/// [`UPLOAD_BODY_BYTES`] of memory.
pub const LARGE_BODIES_AT_ONCE: usize = 4;
/// Large bodies one API key (or account) may have read at once: one integrator's burst
/// leaves slots for others.
pub const LARGE_BODIES_PER_KEY: usize = 2;

/// Who holds large-body slots, and how many each.
#[derive(Default)]
pub struct LargeBodyHolders(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One large-body slot, held while its body is read and its operation runs.
pub struct LargeSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    holders: &'a LargeBodyHolders,
    holder: String,
}

impl LargeBodyHolders {
    /// Counts one more slot for `holder`, unless it holds [`LARGE_BODIES_PER_KEY`] already.
    pub fn enter(&self, holder: &str) -> bool {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(holder.to_owned()).or_default();
        if *count >= LARGE_BODIES_PER_KEY {
            return false;
        }
        *count += 1;
        true
    }

    pub fn leave(&self, holder: &str) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(holder) {
            *count -= 1;
            if *count == 0 {
                held.remove(holder);
            }
        }
    }
}

impl<'a> LargeSlot<'a> {
    /// A slot of `holders` counted for `holder` (after [`LargeBodyHolders::enter`]), released
    /// when dropped.
    pub fn new(
        permit: tokio::sync::SemaphorePermit<'a>,
        holders: &'a LargeBodyHolders,
        holder: String,
    ) -> Self {
        Self {
            _permit: permit,
            holders,
            holder,
        }
    }
}

impl Drop for LargeSlot<'_> {
    fn drop(&mut self) {
        self.holders.leave(&self.holder);
    }
}
