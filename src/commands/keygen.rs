//! `pipeline keygen`: a key pair that signs the entries of a remote cache.

use crate::error::{CliError, ExitStatus};
use crate::ui::Ui;

pub(super) fn run(ui: &Ui) -> Result<ExitStatus, CliError> {
    let (secret, public) = crate::signing::generate().map_err(|why| CliError::Runtime {
        what: "making a key pair",
        source: std::io::Error::other(why),
    })?;
    // Only the secret on stdout, so it can be piped into a CI system's secret store.
    println!("{secret}");
    ui.line(&format!(
        "the private key above is a secret for trusted jobs only (the variable \
         `[cache] signing_key_env` names); put the public key in the pipeline file:\n\
         [cache]\nverify_key = \"{public}\""
    ));
    Ok(ExitStatus::Success)
}
