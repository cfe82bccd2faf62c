//! Registry credentials, per request: explicit `username` + `password_env`, else the user's
//! docker config (`auths`, `credsStore`, `credHelpers`), else anonymous. Nothing is ever
//! written to the docker config and `docker login` is never run.

use std::fmt;

use crate::model::Login;

/// Registry credentials for one request. The password never prints.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) server: String,
    /// From the docker config, in place of a password.
    pub(crate) identity_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, server: {:?}, password: <redacted> }}",
            self.username, self.server
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    #[error("the environment variable `{var}` (password_env for user `{user}`) is not set")]
    MissingPassword { var: String, user: String },
}

/// Names of `password_env` variables that are not set, for checking before anything runs.
pub(crate) fn missing_passwords<'a>(logins: impl IntoIterator<Item = &'a Login>) -> Vec<&'a Login> {
    logins
        .into_iter()
        .filter(|l| std::env::var_os(&l.password_env).is_none())
        .collect()
}

/// Credentials for `registry` (a host, `docker.io` for Docker Hub).
pub(crate) async fn resolve(
    registry: &str,
    login: Option<&Login>,
) -> Result<Option<Credentials>, CredentialError> {
    if let Some(l) = login {
        let password =
            std::env::var(&l.password_env).map_err(|_| CredentialError::MissingPassword {
                var: l.password_env.clone(),
                user: l.username.clone(),
            })?;
        return Ok(Some(Credentials {
            username: l.username.clone(),
            password,
            server: registry.to_string(),
            identity_token: None,
        }));
    }
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    // Helpers are processes: keep them off the async threads.
    let found =
        tokio::task::spawn_blocking(move || docker_credential::get_credential(&server)).await;
    Ok(match found {
        Ok(Ok(docker_credential::DockerCredential::UsernamePassword(username, password))) => {
            Some(Credentials {
                username,
                password,
                server: registry.to_string(),
                identity_token: None,
            })
        }
        Ok(Ok(docker_credential::DockerCredential::IdentityToken(token))) => Some(Credentials {
            username: String::new(),
            password: String::new(),
            server: registry.to_string(),
            identity_token: Some(token),
        }),
        // No config, no entry, or a helper that does not know the registry: anonymous.
        _ => None,
    })
}
