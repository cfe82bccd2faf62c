//! The shipped binary stays lean: one TLS crypto provider (ring, installed by src/tls.rs).
//! A second one (aws-lc through a crate's default features, or OpenSSL) would double the
//! crypto code in the binary and let two providers disagree about which one a TLS
//! connection uses.

/// Crates that are, or bind, a TLS crypto provider other than ring.
const OTHER_PROVIDERS: [&str; 5] = [
    "aws-lc-rs",
    "aws-lc-sys",
    "aws-lc-fips-sys",
    "openssl",
    "openssl-sys",
];

/// The names of the packages Cargo.lock records.
fn locked_packages(lock: &str) -> Vec<String> {
    let doc: toml::Table = lock.parse().expect("Cargo.lock is TOML");
    doc.get("package")
        .and_then(toml::Value::as_array)
        .expect("Cargo.lock lists packages")
        .iter()
        .filter_map(|p| p.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// The crypto providers other than ring among `packages`.
fn other_providers(packages: &[String]) -> Vec<&str> {
    packages
        .iter()
        .map(String::as_str)
        .filter(|p| OTHER_PROVIDERS.contains(p))
        .collect()
}

#[test]
fn the_lock_file_holds_ring_and_no_other_tls_crypto_provider() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock is committed");
    let packages = locked_packages(&lock);
    assert!(
        packages.iter().any(|p| p == "ring"),
        "ring, the one provider, is missing from Cargo.lock"
    );
    let others = other_providers(&packages);
    assert!(
        others.is_empty(),
        "Cargo.lock holds another TLS crypto provider besides ring: {others:?}; turn off the \
         default features that bring it in (see the comments on the HTTP clients in Cargo.toml)"
    );
}

#[test]
fn a_second_provider_in_a_lock_file_is_found() {
    let lock = r#"
version = 4

[[package]]
name = "ring"
version = "0.17.14"

[[package]]
name = "aws-lc-sys"
version = "0.30.0"

[[package]]
name = "openssl-probe"
version = "0.1.6"
"#;
    let packages = locked_packages(lock);
    assert_eq!(other_providers(&packages), ["aws-lc-sys"]);
}
