//! Secret values, read before anything runs and never written anywhere but the step's tmpfs.

use std::collections::BTreeMap;

use super::error::{ApplyError, SecretError};
use crate::model::{Pipeline, SecretSource};

/// Reads every secret's value up front, so a missing one stops the run before it starts.
/// Files are read on the blocking pool, so that an interrupt is handled whatever they are.
pub(super) async fn secret_values(p: &Pipeline) -> Result<BTreeMap<String, String>, ApplyError> {
    let secrets = p.secrets.clone();
    tokio::task::spawn_blocking(move || read_secrets(&secrets))
        .await
        .map_err(|e| ApplyError::Secret {
            name: String::new(),
            source: SecretError::Reader(e),
        })?
}

fn read_secrets(
    secrets: &BTreeMap<String, SecretSource>,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = BTreeMap::new();
    for (name, source) in secrets {
        let fail = |source| ApplyError::Secret {
            name: name.clone(),
            source,
        };
        let value = match source {
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| fail(SecretError::NotSet(var.clone())))?
            }
            SecretSource::File(path) => {
                crate::fsread::read_bounded(path, crate::fsread::SECRET_LIMIT)
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")
                        })
                    })
                    .map_err(|source| {
                        fail(SecretError::Unreadable {
                            path: path.clone(),
                            source,
                        })
                    })?
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}
