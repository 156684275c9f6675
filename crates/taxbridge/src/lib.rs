//! The `taxbridge` binary's library half: the one place where Taxbridge is put together.
//!
//! - [`app`]: [`app::App::build`] opens the store, loads the secrets and wires every domain
//!   service, the task handlers and the HTTP routes. `serve`, `worker` and the API test suite all
//!   call it, so a new service or task kind is added there once and tests run what production runs.
//! - [`settings`]: the one typed settings tree, loaded once in `main`.
//! - [`serve`]: the two long-running commands (`serve`, `worker`) around an [`app::App`].
//! - [`admin`], [`jobs`], [`keyring`], [`secrets`]: the operator's commands and what they share.

pub mod admin;
pub mod app;
pub mod audit;
pub mod fleet;
pub mod jobs;
pub mod keyring;
pub mod secrets;
pub mod serve;
pub mod settings;

/// Creates `dir` (and its parents) readable by this user alone.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
