use std::fs::File;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use super::*;

const HOUR: Duration = Duration::from_hours(1);

/// A test record: `{"image": ID, "blobs": [DIGEST...]}`.
fn read_test(bytes: &[u8]) -> Option<Names> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(Names {
        image: v["image"].as_str().map(str::to_string),
        blobs: v["blobs"]
            .as_array()?
            .iter()
            .map(|b| b.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
    })
}

const KINDS: &[RecordKind] = &[("test", read_test)];

fn set_age(path: &Path, age: Duration) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    store: BlobStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path().join("blobs"));
        Self { dir, store }
    }

    /// A blob of `text`, last written `age` ago.
    fn blob(&self, text: &str, age: Duration) -> String {
        let d = self
            .store
            .put("text/plain", text.as_bytes())
            .unwrap()
            .digest;
        set_age(&self.store.path(&d).unwrap(), age);
        d
    }

    /// A record `key` of `kind` naming `image` and `blobs`, last used `age` ago.
    fn record(&self, kind: &str, key: &str, image: Option<&str>, blobs: &[&str], age: Duration) {
        let body = serde_json::json!({ "image": image, "blobs": blobs });
        let bytes = serde_json::to_vec(&body).unwrap();
        self.store.put_record(kind, key, &bytes).unwrap();
        set_age(&self.record_path(kind, key), age);
    }

    fn record_path(&self, kind: &str, key: &str) -> PathBuf {
        let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
        self.store.root().join("records").join(kind).join(name)
    }

    /// A file at `rel` in the store, last written `age` ago.
    fn file(&self, rel: &str, age: Duration) -> PathBuf {
        let path = self.store.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        File::create(&path).unwrap().write_all(b"x").unwrap();
        set_age(&path, age);
        path
    }

    fn survey(&self, budget: Option<u64>) -> Sweep {
        let policy = Policy { keep: KEEP, budget };
        let held = |id: &str| id == "sha256:held";
        survey(&self.store, KINDS, policy, &held, SystemTime::now()).unwrap()
    }
}

fn removed_paths(s: &Sweep) -> BTreeSet<PathBuf> {
    let blobs = s.blobs.iter().map(|(_, d)| d);
    blobs
        .chain(&s.records)
        .chain(&s.temporary)
        .map(|d| d.path.clone())
        .collect()
}

/// One store holding one of each case; what should go of each.
#[allow(clippy::too_many_lines)]
fn every_case(f: &Fixture) -> (Vec<(&'static str, PathBuf, bool)>, Vec<String>) {
    let old = 3 * KEEP;
    let b = |name: &str, age| f.blob(name, age);
    // (blob, record: key, image, age)
    let (recent, held, dropped, young, unnamed) = (
        b("recent", old),
        b("held", old),
        b("dropped", old),
        b("young", GRACE / 2),
        b("unnamed", 2 * GRACE),
    );
    let shared = b("shared", old);
    f.record("test", "recent", Some("sha256:gone"), &[&recent], KEEP / 2);
    f.record("test", "held", Some("sha256:held"), &[&held, &shared], old);
    f.record("test", "dropped", Some("sha256:gone"), &[&dropped], old);
    f.record("test", "no image", None, &[&shared], old);
    f.record("test", "young", None, &[&young], old);
    let (missing, missing_young) = (
        format!("sha256:{}", "0".repeat(64)),
        format!("sha256:{}", "1".repeat(64)),
    );
    f.record("test", "missing", None, &[&missing], old);
    f.record("test", "missing, young", None, &[&missing_young], GRACE / 2);
    f.record("test", "names nothing", None, &[], old);
    f.record("test", "names nothing, recent", None, &[], KEEP / 2);
    let unreadable = f.file(&format!("records/test/{}", "2".repeat(64)), old);
    let unknown_kind = f.file(&format!("records/newer/{}", "3".repeat(64)), old);
    let odd_name = f.file("sha256/not-a-digest", old);
    let old_tmp = f.file("tmp/.tmp-1-0", 2 * GRACE);
    let young_tmp = f.file("tmp/.tmp-1-1", GRACE / 2);
    let old_write = f.file("sha256/.tmp-1-2", 2 * GRACE);
    let old_record_write = f.file("records/test/.tmp-1-3", 2 * GRACE);
    // A link with a blob's name, to a file outside the store: never followed, never removed.
    let outside = f.dir.path().join("outside");
    std::fs::write(&outside, "outside").unwrap();
    set_age(&outside, old);
    let link = f.store.root().join("sha256").join("4".repeat(64));
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let blob = |d: &String| f.store.path(d).unwrap();
    let rec = |k: &str| f.record_path("test", k);
    let cases: Vec<(&str, PathBuf, bool)> = vec![
        ("a blob a recent record names", blob(&recent), false),
        ("a blob a record of a held image names", blob(&held), false),
        (
            "a blob both a live and a dead record name",
            blob(&shared),
            false,
        ),
        ("a blob only a dead record names", blob(&dropped), true),
        ("a blob younger than the grace", blob(&young), false),
        ("a blob nothing names, past the grace", blob(&unnamed), true),
        ("a recent record", rec("recent"), false),
        ("an old record of a held image", rec("held"), false),
        (
            "an old record of an image no engine holds",
            rec("dropped"),
            true,
        ),
        ("a dead record whose blobs all stay", rec("no image"), false),
        (
            "a record whose blob is younger than the grace",
            rec("young"),
            false,
        ),
        ("a record whose blob is missing", rec("missing"), true),
        (
            "a young record whose blob is missing",
            rec("missing, young"),
            false,
        ),
        ("an old record naming no blob", rec("names nothing"), true),
        (
            "a recent record naming no blob",
            rec("names nothing, recent"),
            false,
        ),
        ("an old record that cannot be read", unreadable, true),
        ("a record of an unknown kind", unknown_kind, false),
        ("a file with no blob name", odd_name, false),
        ("an old temporary file", old_tmp, true),
        ("a young temporary file", young_tmp, false),
        ("an old unfinished blob", old_write, true),
        ("an old unfinished record", old_record_write, true),
        ("a link in the store", link.clone(), false),
        ("the file a link points at", outside.clone(), false),
    ];
    let mut blobs = vec![dropped, unnamed];
    blobs.sort();
    (cases, blobs)
}

#[test]
fn records_keep_blobs_while_recent_or_while_an_engine_holds_their_image() {
    let f = Fixture::new();
    let (cases, blobs) = every_case(&f);
    let sweep = f.survey(None);
    let removed = removed_paths(&sweep);
    for (what, path, gone) in &cases {
        assert_eq!(removed.contains(path), *gone, "{what}: {}", path.display());
    }
    assert_eq!(removed.len(), cases.iter().filter(|c| c.2).count());
    let names: Vec<_> = sweep.blobs.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(names, blobs);

    let size = sweep.size();
    let freed = sweep.remove().unwrap();
    assert_eq!(freed, size);
    assert_eq!((freed.blobs, freed.records, freed.temporary), (2, 4, 3));
    for (what, path, gone) in &cases {
        let exists = std::fs::symlink_metadata(path).is_ok();
        assert_eq!(exists, !gone, "after removal, {what}: {}", path.display());
    }
    assert!(
        f.survey(None).is_empty(),
        "a second collection finds nothing"
    );
}

#[test]
fn a_size_budget_removes_the_least_recently_used_blobs_first() {
    let f = Fixture::new();
    let old = 3 * KEEP;
    // Four live blobs of 10 bytes: a's record was used longest ago, then b's, then c's; d was
    // written within the grace. The budget holds two.
    let blobs: Vec<String> = ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"]
        .iter()
        .map(|t| f.blob(t, old))
        .collect();
    let d = f.blob("dddddddddd", GRACE / 2);
    for (i, (blob, used)) in blobs.iter().zip([30, 20, 10]).enumerate() {
        f.record(
            "test",
            &i.to_string(),
            Some("sha256:held"),
            &[blob],
            used * HOUR,
        );
    }
    let sweep = f.survey(Some(25));
    let gone: Vec<&String> = sweep.blobs.iter().map(|(d, _)| d).collect();
    assert_eq!(gone, {
        let mut v = vec![&blobs[0], &blobs[1]];
        v.sort();
        v
    });
    assert_eq!(sweep.records.len(), 2, "their records go with them");
    assert!(f.survey(Some(40)).is_empty(), "within the budget");
    // However small the budget, what is younger than the grace stays.
    let all = f.survey(Some(0));
    assert_eq!(all.blobs.len(), 3);
    assert!(all.blobs.iter().all(|(digest, _)| digest != &d));
}

#[test]
fn reading_a_record_keeps_it_and_its_blobs_and_a_file_changed_since_the_survey_stays() {
    let f = Fixture::new();
    let old = 3 * KEEP;
    let blob = f.blob("read", old);
    f.record("test", "read", None, &[&blob], old);
    let before = f.survey(None);
    assert_eq!(before.blobs.len(), 1);
    // A run reads the record after the survey: the removal leaves both.
    assert!(f.store.record("test", "read").is_some());
    let freed = before.remove().unwrap();
    assert_eq!((freed.records, freed.blobs), (0, 0), "{freed:?}");
    assert!(f.store.contains(&blob));
    assert!(f.store.record("test", "read").is_some());
    assert!(f.survey(None).is_empty(), "the record is recent now");
}

#[test]
fn folders_of_the_store_that_are_links_are_not_followed() {
    let f = Fixture::new();
    let outside = f.dir.path().join("outside");
    for (dir, file) in [
        ("records", format!("test/{}", "5".repeat(64))),
        ("sha256", "6".repeat(64)),
        ("tmp", ".tmp-1-0".to_string()),
    ] {
        let target = outside.join(dir);
        let path = target.join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{}").unwrap();
        set_age(&path, 3 * KEEP);
        std::fs::create_dir_all(f.store.root()).unwrap();
        std::os::unix::fs::symlink(&target, f.store.root().join(dir)).unwrap();
    }
    assert!(f.survey(None).is_empty());
    // The same files in the store's own folders would go.
    let g = Fixture::new();
    g.file(&format!("records/test/{}", "5".repeat(64)), 3 * KEEP);
    g.file(&format!("sha256/{}", "6".repeat(64)), 3 * KEEP);
    g.file("tmp/.tmp-1-0", 3 * KEEP);
    assert_eq!(g.survey(None).size().records, 1);
    assert_eq!(g.survey(None).size().blobs, 1);
    assert_eq!(g.survey(None).size().temporary, 1);
}
