//! The store's directories hold answers and pseudonyms, so the service
//! creates them readable by the owner only.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use alliance::store::Store;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[test]
fn new_store_directories_are_private() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data").join("store");
    let store = Store::open(&data, 16 << 20).expect("store opens");
    assert_eq!(mode(&data), 0o700, "the store directory");
    assert_eq!(mode(data.parent().unwrap()), 0o700, "a parent the store created");

    let copy = dir.path().join("copy");
    store.copy_to(&copy).expect("copied");
    assert_eq!(mode(&copy), 0o700, "the copy of a backup");
}

#[test]
fn existing_directory_keeps_its_mode() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("shared");
    std::fs::create_dir(&data).expect("created");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).expect("mode set");
    drop(Store::open(&data, 16 << 20).expect("store opens"));
    assert_eq!(mode(&data), 0o750);
}
