//! The layering the code promises, checked: every state change and every read goes through a
//! domain service, so no crate outside the domain and the store names a storage port. (The
//! compiler already keeps the crates' arrows one way; this keeps the services the one door.)

use std::path::{Path, PathBuf};

/// The domain's storage ports: implemented by `taxbridge-store` (and `BlobStore` by
/// `taxbridge-blobs`), used by the domain's services alone.
const PORTS: [&str; 12] = [
    "AccountStore",
    "ApiKeyStore",
    "BlobStore",
    "ConnectionStore",
    "ImportStore",
    "LimitCells",
    "SignInStore",
    "StoreHealth",
    "TaskStore",
    "UploadStore",
    "UsageStore",
    "WorkspaceStore",
];

/// The one exception, and why: the worker's queue runner claims, renews, hands back and drops
/// tasks; those are the queue's own mechanics, not a feature's state.
const ALLOWED: [(&str, &str); 1] = [("crates/worker/src/lib.rs", "TaskStore")];

/// The crates whose code must reach state through the domain's services.
const ABOVE_THE_DOMAIN: [&str; 5] = [
    "crates/api/src",
    "crates/web/src",
    "crates/worker/src",
    "crates/outbound/src",
    "crates/taxbridge/src",
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("read a source folder")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Whether `text` names `word` as a whole identifier.
fn names(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !part(before) && !part(after)
    })
}

#[test]
fn no_crate_above_the_domain_names_a_storage_port() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut offenders = Vec::new();
    for dir in ABOVE_THE_DOMAIN {
        let mut files = Vec::new();
        sources(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "no sources under {dir}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let relative = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            for port in PORTS {
                if names(&text, port) && !ALLOWED.contains(&(relative.as_str(), port)) {
                    offenders.push(format!("{relative} names {port}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "call a domain service instead of a storage port:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_domain_hands_out_no_storage_port() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/domain/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for port in PORTS {
            let accessor = format!("-> &Arc<dyn {port}>");
            assert!(
                !text.contains(&accessor),
                "{} hands out its {port}: add a service method instead",
                file.display()
            );
        }
    }
}

#[test]
fn the_word_check_sees_whole_identifiers_only() {
    assert!(names("use x::ImportStore;", "ImportStore"));
    assert!(names("Arc<dyn TaskStore>", "TaskStore"));
    assert!(!names("MyImportStoreish", "ImportStore"));
    assert!(!names("ImportStore_x", "ImportStore"));
}
