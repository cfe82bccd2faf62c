//! Secrets for steps that do not run as root: the secret file belongs to the user the step
//! runs as (the step's `user`, else the image's configured user), mode 0400, so that user
//! reads it and no other does.

use crate::faults::{pipeline, setup, BASE};
use crate::harness::{unique, Project};
use crate::support::engine::{docker, docker_ok, remove_image};

/// A project whose pipeline (on `base`) runs `steps` with the secret `TOKEN` from a file;
/// returns it with the secret's sha256.
fn project(name: &str, base: &str, steps: &str) -> (Project, String) {
    let secret = format!("usersecret-{}", unique("v"));
    let p = Project::new();
    p.file("token.txt", &secret);
    let toml = pipeline(
        name,
        steps,
        &format!("secrets/{name}:1"),
        "[secrets.TOKEN]\nfile = \"token.txt\"\n",
    )
    .replace(BASE, base);
    p.pipeline(&toml);
    let sha = docker_ok(&[
        "run",
        "--rm",
        BASE,
        "sh",
        "-c",
        &format!("printf %s '{secret}' | sha256sum | cut -d' ' -f1"),
    ]);
    (p, sha)
}

/// What the step prints about the secret: its hash, who reads it, its owner and mode.
const PROBE: &str = "echo read=$(sha256sum < /run/secrets/TOKEN | cut -d' ' -f1) as=$(id -u); \
                     stat -c 'owner=%u mode=%a' /run/secrets/TOKEN";

#[test]
fn a_step_running_as_nobody_reads_its_secret_and_owns_it_alone() {
    setup();
    let name = unique("secrets-nobody");
    let steps = format!(
        "[[step]]\nname = \"as nobody\"\nuser = \"nobody\"\nsecrets = [\"TOKEN\"]\nrun = \"{PROBE}\"\n\n\
         [[step]]\nname = \"after\"\nrun = \"test ! -e /run/secrets/TOKEN && echo secrets-gone\"\n"
    );
    let (p, sha) = project(&name, BASE, &steps);
    let text = p.apply_ok(&name, &["--no-cache"]);
    // busybox's nobody is 42:42.
    assert!(text.contains(&format!("read={sha} as=42")), "{text}");
    assert!(text.contains("owner=42 mode=400"), "{text}");
    assert!(text.contains("secrets-gone"), "{text}");
    remove_image(&format!("secrets/{name}:1"));
}

#[test]
fn a_base_whose_user_is_1000_places_and_reads_its_secret() {
    setup();
    let name = unique("secrets-uid");
    // A base image whose configured user is uid 1000, unknown to its /etc/passwd.
    let base = format!("secrets-user1000:{name}");
    let holder = docker_ok(&["create", BASE, "true"]);
    docker_ok(&["commit", "--change", "USER 1000", &holder, &base]);
    let _ = docker(&["rm", "-f", &holder]);
    let steps = format!(
        "[[step]]\nname = \"as the image's user\"\nsecrets = [\"TOKEN\"]\nrun = \"{PROBE}\"\n\n\
         [[step]]\nname = \"after\"\nrun = \"test ! -e /run/secrets/TOKEN && echo secrets-gone\"\n"
    );
    let (p, sha) = project(&name, &base, &steps);
    let text = p.apply_ok(&name, &["--no-cache"]);
    assert!(text.contains(&format!("read={sha} as=1000")), "{text}");
    assert!(text.contains("owner=1000 mode=400"), "{text}");
    assert!(text.contains("secrets-gone"), "{text}");
    // The image keeps the base's user.
    let image = crate::support::engine::image_inspect(&format!("secrets/{name}:1"));
    assert_eq!(image["Config"]["User"], "1000");
    remove_image(&format!("secrets/{name}:1"));
    remove_image(&base);
}

#[test]
fn a_secret_printed_base64_encoded_or_json_escaped_is_masked() {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    use base64::Engine as _;
    setup();
    let name = unique("secrets-encoded");
    // `>>>` and `???` make `+` and `/` in base64, where its URL-safe form differs.
    let secret = format!("tok>>>en???\"{}\"", unique("v"));
    let p = Project::new();
    p.file("token.txt", &secret);
    let printed = [
        "base64 -w0 < /run/secrets/TOKEN; echo",
        "base64 -w0 < /run/secrets/TOKEN | tr -d =; echo",
        "base64 -w0 < /run/secrets/TOKEN | tr '+/' '-_'; echo",
        "(printf 'user:'; cat /run/secrets/TOKEN) | base64 -w0; echo",
        "printf '{\"token\":\"%s\"}\\n' \"$(sed 's/\"/\\\\\"/g' /run/secrets/TOKEN)\"",
    ];
    let steps = format!(
        "[[step]]\nname = \"print\"\nsecrets = [\"TOKEN\"]\nrun = '''\n{}\n'''\n",
        printed.join("\n")
    );
    let toml = pipeline(
        &name,
        &steps,
        &format!("secrets/{name}:1"),
        "[secrets.TOKEN]\nfile = \"token.txt\"\n",
    );
    p.pipeline(&toml);
    let text = p.apply_ok(&name, &["--no-cache"]);
    let json = serde_json::to_string(&secret).unwrap();
    let forms = [
        STANDARD.encode(&secret),
        STANDARD_NO_PAD.encode(&secret),
        URL_SAFE.encode(&secret),
        STANDARD.encode(format!("user:{secret}")),
        json[1..json.len() - 1].to_string(),
    ];
    for form in &forms {
        assert!(!text.contains(form.as_str()), "`{form}` shows:\n{text}");
    }
    // Each of the five lines is masked, not missing.
    assert!(text.matches("******").count() >= printed.len(), "{text}");
    remove_image(&format!("secrets/{name}:1"));
}
