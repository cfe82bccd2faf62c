//! A registry's token service, as the pusher asks it for a token wider than the session's:
//! one that also reads the repository a blob is mounted from. The registry names its token
//! service in the `WWW-Authenticate: Bearer realm=...,service=...` challenge of `GET /v2/`;
//! the service takes one `scope` query parameter per repository (as docker/distribution's
//! client and go-containerregistry ask) and answers `{"token": ...}` or
//! `{"access_token": ...}`.

use serde::Deserialize;

/// Where a registry's tokens are given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    /// The token service's URL.
    pub(super) realm: String,
    /// The `service` the tokens are for (their audience), when the registry names one.
    pub(super) service: Option<String>,
}

/// The Bearer challenge of a `WWW-Authenticate` header; `None` for another scheme (Basic),
/// no realm, or a header that does not parse.
pub(super) fn challenge(header: &str) -> Option<Challenge> {
    http_auth::ChallengeParser::new(header)
        .map_while(Result::ok)
        .filter(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .find_map(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some(Challenge {
                realm: param("realm").filter(|r| !r.is_empty())?,
                service: param("service").filter(|s| !s.is_empty()),
            })
        })
}

/// The scope that pushes to `repository`.
pub(super) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// The scope that reads `repository`.
pub(super) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The request for a token covering every one of `scopes` (not yet authenticated).
pub(super) fn request(
    http: &reqwest::Client,
    challenge: &Challenge,
    scopes: &[String],
) -> reqwest::RequestBuilder {
    let mut query: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", s.as_str())).collect();
    if let Some(service) = &challenge.service {
        query.push(("service", service));
    }
    http.get(&challenge.realm).query(&query)
}

#[derive(Deserialize)]
struct Answer {
    token: Option<String>,
    access_token: Option<String>,
}

/// The token of a token service's answer; `None` when it holds none.
pub(super) fn token(body: &[u8]) -> Option<String> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_challenge_is_read_from_what_registries_send() {
        let hub = Challenge {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
        };
        let cases: [(&str, Option<Challenge>); 9] = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
                Some(hub.clone()),
            ),
            // Scheme and names in any case; a scope and an error beside them.
            (
                r#"bearer Realm="https://auth.docker.io/token", SERVICE="registry.docker.io", scope="repository:a/b:pull,push",error="insufficient_scope""#,
                Some(hub.clone()),
            ),
            // After a Basic challenge in the same header.
            (
                r#"Basic realm="x", Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
                Some(hub),
            ),
            // No service (ECR, some Harbor setups).
            (
                r#"Bearer realm="https://r.example/token""#,
                Some(Challenge {
                    realm: "https://r.example/token".into(),
                    service: None,
                }),
            ),
            // Escapes inside a quoted value.
            (
                r#"Bearer realm="https://r.example/t\"k",service="s""#,
                Some(Challenge {
                    realm: "https://r.example/t\"k".into(),
                    service: Some("s".into()),
                }),
            ),
            (r#"Basic realm="pipeline-test""#, None),
            (r#"Bearer service="s""#, None),
            (r#"Bearer realm="""#, None),
            ("Bearer realm=\"unterminated", None),
        ];
        for (header, want) in cases {
            assert_eq!(challenge(header), want, "{header}");
        }
    }

    #[test]
    fn a_token_request_names_every_scope_and_the_service() {
        crate::tls::install();
        let http = reqwest::Client::new();
        let c = Challenge {
            realm: "http://127.0.0.1:1/token?account=a".into(),
            service: Some("reg istry".into()),
        };
        let scopes = [push_scope("team/app"), pull_scope("team/base")];
        let url = request(&http, &c, &scopes)
            .build()
            .unwrap()
            .url()
            .to_string();
        assert_eq!(
            url,
            "http://127.0.0.1:1/token?account=a&scope=repository%3Ateam%2Fapp%3Apull%2Cpush\
             &scope=repository%3Ateam%2Fbase%3Apull&service=reg+istry"
        );
    }

    #[test]
    fn the_token_is_read_from_either_field() {
        let cases: [(&str, Option<&str>); 6] = [
            (r#"{"token":"t1","expires_in":300}"#, Some("t1")),
            (r#"{"access_token":"t2"}"#, Some("t2")),
            (r#"{"token":"","access_token":"t3"}"#, Some("t3")),
            (r#"{"token":"t4","access_token":"t5"}"#, Some("t4")),
            (r"{}", None),
            ("<html>denied</html>", None),
        ];
        for (body, want) in cases {
            assert_eq!(token(body.as_bytes()).as_deref(), want, "{body}");
        }
    }
}
