//! What the outbound suites share: a file in memory as a tus upload's source.

use bytes::Bytes;
use taxbridge_outbound::tus::Chunks;

pub struct Memory(pub Vec<u8>);

#[async_trait::async_trait]
impl Chunks for Memory {
    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, String> {
        let start = offset as usize;
        Ok(Bytes::copy_from_slice(&self.0[start..start + len]))
    }
}
