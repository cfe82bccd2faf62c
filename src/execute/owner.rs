//! `owner = "app:app"` of a copy: names resolved in the image's own `/etc/passwd` and
//! `/etc/group`, read from the build container through the engine's archive endpoint (no
//! process runs in the image), as `COPY --chown` resolves them.

use futures_util::StreamExt;

use crate::engine::Engine;
use crate::model::OwnerName;

/// Largest `/etc/passwd` or `/etc/group` read.
const LIMIT: usize = 1 << 20;

/// The uid and gid of `owner` in the container `id`: a name looked up, a number as it is;
/// without a group, the gid is the uid (as Docker documents for `--chown`).
pub(super) async fn resolve<E: Engine>(
    engine: &E,
    id: &str,
    owner: &OwnerName,
) -> std::io::Result<(u32, u32)> {
    let fail = |why: String| {
        std::io::Error::other(format!("owner `{}` ({}): {why}", owner.text, owner.at))
    };
    let uid = match owner.user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => {
            let passwd = read(engine, id, "/etc/passwd").await.map_err(fail)?;
            lookup(&passwd, &owner.user).ok_or_else(|| {
                fail(format!(
                    "no user `{}` in the image's /etc/passwd",
                    owner.user
                ))
            })?
        }
    };
    let gid = match &owner.group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group = read(engine, id, "/etc/group").await.map_err(fail)?;
                lookup(&group, g)
                    .ok_or_else(|| fail(format!("no group `{g}` in the image's /etc/group")))?
            }
        },
    };
    Ok((uid, gid))
}

/// The content of the file at `path` in the container, from the engine's tar of it.
async fn read<E: Engine>(engine: &E, id: &str, path: &str) -> Result<String, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read {path} in the image: {e}");
    let mut stream = engine.download(id, path).await.map_err(|e| cannot(&e))?;
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.map_err(|e| cannot(&e))?);
        if tar.len() > LIMIT + 4096 {
            return Err(cannot(&"larger than 1 MiB"));
        }
    }
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = archive.entries().map_err(|e| cannot(&e))?;
    let mut entry = entries
        .next()
        .ok_or_else(|| cannot(&"empty archive"))?
        .map_err(|e| cannot(&e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).map_err(|e| cannot(&e))?;
    Ok(text)
}

/// The id (third field) of `name` in a `/etc/passwd` or `/etc/group` text.
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_by_their_first_field_and_give_the_third() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbad\n";
        assert_eq!(lookup(passwd, "app"), Some(1000));
        assert_eq!(lookup(passwd, "root"), Some(0));
        assert_eq!(lookup(passwd, "ap"), None);
        assert_eq!(lookup(passwd, "bad"), None);
        let group = "root:x:0:\nstaff:x:50:app\n";
        assert_eq!(lookup(group, "staff"), Some(50));
    }
}
