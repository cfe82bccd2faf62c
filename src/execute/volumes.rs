//! Cache mounts as engine volumes: their names, labels and scope, and the names of the lock
//! containers of `sharing = "locked"` mounts. Pure: the build creates and locks them, `gc
//! --mounts` finds them by [`MARKER`].
//!
//! A cache mount is shared by the applies of one pipeline (its name) for one platform: the
//! volume's name and labels come from [`CacheScope`], the one place that turns a pipeline and
//! a platform string into a scope.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The label every cache volume carries (value [`MARKER_VALUE`]): what `gc --mounts` lists.
pub(crate) const MARKER: &str = "pipeline.cache-mount";
pub(crate) const MARKER_VALUE: &str = "v1";
/// Labels naming the pipeline, the mount path and the platform of a cache volume.
pub(crate) const LABEL_PIPELINE: &str = "pipeline.cache-mount.pipeline";
pub(crate) const LABEL_PATH: &str = "pipeline.cache-mount.path";
pub(crate) const LABEL_PLATFORM: &str = "pipeline.cache-mount.platform";

/// How the names of cache volumes start.
pub(crate) const VOLUME_PREFIX: &str = "pipeline-cache-";
/// How the names of lock containers start. No build container name has a `.` after its
/// prefix's first word, so the two are never confused (see `leftovers`).
pub(crate) const LOCK_PREFIX: &str = "pipeline-lock.";

/// The applies that share cache volumes: one pipeline, one platform (`linux/amd64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheScope {
    pub(crate) pipeline: String,
    pub(crate) platform: String,
}

/// A cache mount's volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheVolume {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
}

impl CacheScope {
    pub(crate) fn new(pipeline: &str, platform: &str) -> Self {
        Self {
            pipeline: pipeline.to_string(),
            platform: platform.to_string(),
        }
    }

    /// The volume of the cache mounted at `path`: `pipeline-cache-<pipeline>-<digest>`, the
    /// pipeline name reduced to what a volume name may hold, the digest of scope and path
    /// making it unique.
    pub(crate) fn volume(&self, path: &str) -> CacheVolume {
        let mut h = Sha256::new();
        for part in [
            "pipeline-cache-mount-v1",
            &self.pipeline,
            &self.platform,
            path,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = hex::encode(h.finalize());
        let safe = crate::execute::engine_name(&self.pipeline);
        let labels = [
            (MARKER, MARKER_VALUE),
            (LABEL_PIPELINE, self.pipeline.as_str()),
            (LABEL_PATH, path),
            (LABEL_PLATFORM, self.platform.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        CacheVolume {
            name: format!("{VOLUME_PREFIX}{safe}-{}", &digest[..20]),
            labels,
        }
    }
}

impl CacheVolume {
    /// The name of the container whose existence is the lock of this volume: the engine
    /// refuses a second container of the same name, on every host it serves.
    pub(crate) fn lock_name(&self) -> String {
        let digest = self.name.rsplit('-').next().unwrap_or_default();
        format!("{LOCK_PREFIX}{digest}")
    }
}

/// True for the names [`CacheVolume::lock_name`] gives.
pub(crate) fn is_lock(name: &str) -> bool {
    name.strip_prefix(LOCK_PREFIX)
        .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_scoped_by_pipeline_platform_and_path() {
        let a = CacheScope::new("web app", "linux/amd64");
        let v = a.volume("/var/cache/apt");
        assert!(v.name.starts_with("pipeline-cache-web-app-"), "{}", v.name);
        assert_eq!(v.labels[MARKER], MARKER_VALUE);
        assert_eq!(v.labels[LABEL_PATH], "/var/cache/apt");
        assert_eq!(v.labels[LABEL_PLATFORM], "linux/amd64");
        assert_eq!(v.labels[LABEL_PIPELINE], "web app");
        assert_eq!(v, a.volume("/var/cache/apt"), "stable");
        for other in [
            a.volume("/var/lib/apt/lists"),
            CacheScope::new("web app", "linux/arm64").volume("/var/cache/apt"),
            CacheScope::new("web-app", "linux/amd64").volume("/var/cache/apt"),
        ] {
            assert_ne!(other.name, v.name);
        }
        let lock = v.lock_name();
        assert!(is_lock(&lock), "{lock}");
        assert!(!crate::execute::leftovers::is_build_container(&lock));
        assert!(!is_lock("pipeline-web-18c2f3a4b51a2b-1"));
    }
}
