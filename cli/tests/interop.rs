//! The `client-credentials` binary against a real authorization server: the oidc-provider that
//! `scripts/test` starts on 127.0.0.1 (it sets `OIDC_PROVIDER_URL`, the issuer, and
//! `INTEROP_CLIENT_KEY_DIR`, the `private_key_jwt` client's key; see the library's
//! `tests/interop/`). Without them the test fails, saying so: it never skips.

use serde_json::Value;

/// The issuer, as `scripts/test` exported it.
fn issuer() -> String {
    match std::env::var("OIDC_PROVIDER_URL") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "OIDC_PROVIDER_URL is not set: the interop tests need a live oidc-provider; \
             run them with `scripts/test` (see the README), which starts one on 127.0.0.1"
        ),
    }
}

#[test]
fn cli_discovers_the_issuer_and_signs_with_a_private_key_from_a_file() {
    let dir = std::env::var("INTEROP_CLIENT_KEY_DIR").unwrap_or_else(|_| {
        panic!("INTEROP_CLIENT_KEY_DIR is not set: run the interop tests with `scripts/test`")
    });
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_client-credentials"))
        .env_remove("CLIENT_SECRET")
        .stdin(std::process::Stdio::null())
        .args(["--issuer", &issuer(), "--client-id", "jwt-client"])
        .args([
            "--private-key",
            &format!("{dir}/client-key.der"),
            "--alg",
            "ES256",
        ])
        .args([
            "--key-id",
            "interop-client",
            "--scope",
            "api:read",
            "--json",
        ])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json on stdout");
    assert_eq!(json["token_type"], "Bearer", "{stdout}");
    assert_eq!(json["scope"], "api:read", "{stdout}");
}
