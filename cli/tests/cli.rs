//! The `client-credentials` binary, run against the embedded token server.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client_credentials_test_server::{
    DEMO_AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Fault, TestClient, TestServer,
};
use serde_json::Value;

const SECRET_ENV: &str = "CLIENT_SECRET";

/// The binary, with no client secret inherited from the environment.
fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_client-credentials"));
    command.env_remove(SECRET_ENV).stdin(Stdio::null());
    command
}

/// The binary pointed at the server's token endpoint as the demo client.
fn against(server: &TestServer, secret: &str) -> Command {
    let mut command = cli();
    command
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", DEMO_CLIENT_ID])
        .env(SECRET_ENV, secret);
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("the binary runs");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    (output, stdout, stderr)
}

fn assert_secret_absent(secret: &str, stdout: &str, stderr: &str) {
    assert!(
        !stdout.contains(secret),
        "the secret is in stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains(secret),
        "the secret is in stderr:\n{stderr}"
    );
}

#[test]
fn prints_a_summary_with_unverified_claims() {
    let server = TestServer::start();
    let (output, stdout, stderr) = run(against(&server, DEMO_CLIENT_SECRET).args([
        "--scope",
        "read",
        "--audience",
        DEMO_AUDIENCE,
    ]));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("token type:     Bearer"), "{stdout}");
    assert!(stdout.contains("scope:          read"), "{stdout}");
    assert!(stdout.contains("expires:        in 3600s, at "), "{stdout}");
    assert!(stdout.contains("UNVERIFIED"), "{stdout}");
    assert!(stdout.contains(r#"sub       "demo-client""#), "{stdout}");
    assert!(
        stdout.contains(&format!(r#"aud       "{DEMO_AUDIENCE}""#)),
        "{stdout}"
    );
    assert!(stdout.contains("--show-token prints it"), "{stdout}");
    assert_secret_absent(DEMO_CLIENT_SECRET, &stdout, &stderr);
    assert_eq!(server.requests_served(), 1);
}

#[test]
fn wrong_secret_exits_non_zero_with_invalid_client() {
    let server = TestServer::start();
    let wrong = "wrong-secret-d41d8cd9";
    let (output, stdout, stderr) = run(&mut against(&server, wrong));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(
        stderr.contains("client authentication failed"),
        "the server's description: {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert_secret_absent(wrong, &stdout, &stderr);
}

#[test]
fn json_output_parses_and_holds_the_token_only_when_asked() {
    let server = TestServer::start();
    let (output, stdout, stderr) =
        run(against(&server, DEMO_CLIENT_SECRET).args(["--json", "--scope", "read write"]));
    assert!(output.status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], "read write");
    assert_eq!(json["expires_in"], 3600);
    assert!(json["expires_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(json.get("access_token").is_none(), "{stdout}");

    let (output, stdout, stderr) =
        run(against(&server, DEMO_CLIENT_SECRET).args(["--json", "--show-token"]));
    assert!(output.status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let token = json["access_token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["sub"], DEMO_CLIENT_ID);
    assert_secret_absent(DEMO_CLIENT_SECRET, &stdout, &stderr);
}

#[test]
fn json_failure_is_machine_readable_too() {
    let server = TestServer::start();
    let (output, stdout, stderr) =
        run(against(&server, DEMO_CLIENT_SECRET).args(["--json", "--scope", "admin"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("invalid_scope"), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["error"], "invalid_scope");
    assert_eq!(json["status"], 400);
    assert_eq!(json["retryable"], false);
}

#[test]
fn reads_the_secret_from_stdin_or_a_named_variable() {
    let server = TestServer::start();
    let mut child = cli()
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args([
            "--client-id",
            DEMO_CLIENT_ID,
            "--secret-stdin",
            "--auth",
            "post",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{DEMO_CLIENT_SECRET}").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert_secret_absent(DEMO_CLIENT_SECRET, &stdout, &stderr);

    let (output, _, stderr) = run(cli()
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", DEMO_CLIENT_ID, "--secret-env", "MY_SECRET"])
        .env("MY_SECRET", DEMO_CLIENT_SECRET));
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn basic_credentials_go_unencoded_when_asked() {
    let server = TestServer::start();
    let (output, stdout, stderr) =
        run(against(&server, DEMO_CLIENT_SECRET).args(["--auth", "basic-unencoded"]));
    assert!(output.status.success(), "{stderr}");
    assert_secret_absent(DEMO_CLIENT_SECRET, &stdout, &stderr);
    let (_, help, _) = run(cli().arg("--help"));
    assert!(
        help.contains("basic-unencoded") && help.contains("--token-endpoint-audience"),
        "{help}"
    );
}

#[test]
fn a_missing_secret_is_a_usage_error_naming_the_variable() {
    let server = TestServer::start();
    let (output, _, stderr) = run(cli()
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", DEMO_CLIENT_ID]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("CLIENT_SECRET"), "{stderr}");
    assert_eq!(server.requests_served(), 0);
    // There is no argument for the secret.
    let (output, _, _) = run(against(&server, DEMO_CLIENT_SECRET).args(["--client-secret", "x"]));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn sends_resources_params_and_reports_server_faults() {
    let server = TestServer::builder()
        .client(
            TestClient::new("svc", "s3cr3t-9f8e7d")
                .scopes(["x"])
                .resources(["https://a.example", "https://b.example"]),
        )
        .start();
    let (output, stdout, stderr) = run(cli()
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", "svc", "--resource", "https://a.example"])
        .args(["--resource", "https://b.example", "--param", "foo=bar"])
        .env(SECRET_ENV, "s3cr3t-9f8e7d"));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains(r#"["https://a.example","https://b.example"]"#),
        "{stdout}"
    );

    server.push_fault(Fault::ServiceUnavailable {
        retry_after: std::time::Duration::from_secs(3),
    });
    let (output, _, stderr) = run(cli()
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", "svc"])
        .env(SECRET_ENV, "s3cr3t-9f8e7d"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("http 503"), "{stderr}");
    assert!(stderr.contains("retried"), "{stderr}");
}

#[test]
fn demo_needs_no_configuration() {
    let (output, stdout, stderr) = run(cli().args(["--demo", "--scope", "write"]));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("scope:          write"), "{stdout}");
    assert!(stdout.contains("UNVERIFIED"), "{stdout}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (output, _, stderr) = run(cli()
        .args(["--token-url", "http://idp.example.com/token"])
        .args(["--client-id", "c"])
        .env(SECRET_ENV, "x"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("loopback"), "{stderr}");
    let (output, _, stderr) = run(cli().args(["--demo", "--param", "novalue"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
    let (output, _, stderr) = run(cli().args(["--demo", "--param", "scope=x"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("scope"), "{stderr}");
}

#[test]
fn summary_prints_the_token_length_not_its_start() {
    let server = TestServer::start();
    let (output, stdout, stderr) = run(&mut against(&server, DEMO_CLIENT_SECRET));
    assert!(output.status.success(), "{stderr}");
    // The embedded server's tokens all start with this JWT header.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    assert!(!stdout.contains(&header[..4]), "{stdout}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("access token:"))
        .unwrap();
    assert!(
        line.contains(" characters; --show-token prints it)"),
        "{line}"
    );
    assert!(!line.contains('…'), "{line}");
}

/// A token endpoint on 127.0.0.1 that answers one request with `body` as JSON.
fn serve_once(body: String) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut request_body = vec![0; length];
        reader.read_exact(&mut request_body).unwrap();
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    (url, handle)
}

#[test]
fn out_of_range_claims_are_printed_as_such() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(br#"{"exp":10000000000000000000,"iat":-5,"nbf":1e300,"auth_time":"soon"}"#);
    let token = format!("{header}.{claims}.");
    let (url, server) = serve_once(format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":60}}"#
    ));
    let (output, stdout, stderr) = run(cli()
        .args(["--token-url", &url, "--client-id", "c"])
        .env(SECRET_ENV, "s"));
    server.join().unwrap();
    assert!(output.status.success(), "{stderr}");
    for claim in ["exp", "iat", "nbf"] {
        let line = stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{claim} ")))
            .unwrap_or_else(|| panic!("no {claim} in {stdout}"));
        assert!(line.ends_with("(out of range)"), "{line}");
    }
}

/// A P-256 key for tests only (PKCS#8 PEM), never registered anywhere.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKnDzXNPb3r7KRDOG
SMuSLxUSgDgOyTxpWgsuI/vDWgihRANCAARlhBL21ouiQmBRm5AM3dvrBTsMIOy1
dNcB0p7Dop1o+mt+ubWDhym0SY+TD860XS2vA72JuD1UtOSqFtRasQXJ
-----END PRIVATE KEY-----
";

/// A directory of its own for one test, removed at the end.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cc-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary as a client with no secret, for the secretless flags.
fn secretless(server: &TestServer) -> Command {
    let mut command = cli();
    command
        .arg("--token-url")
        .arg(server.token_url().to_string())
        .args(["--client-id", DEMO_CLIENT_ID]);
    command
}

fn unsigned_jwt(exp: u64) -> String {
    let claims = format!(r#"{{"iss":"demo-client","sub":"demo-client","exp":{exp}}}"#);
    format!(
        "eyJhbGciOiJFUzI1NiJ9.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(claims)
    )
}

#[test]
fn dpop_asks_for_a_dpop_bound_token() {
    let server = TestServer::start();
    let (output, stdout, stderr) = run(against(&server, DEMO_CLIENT_SECRET).arg("--dpop"));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("token type:     DPoP"), "{stdout}");
}

#[test]
fn an_expired_assertion_file_is_refused_before_sending_naming_the_file() {
    let server = TestServer::start();
    let dir = Dir::new("expired");
    let assertion = unsigned_jwt(1_000);
    let path = dir.file("token", &assertion);
    let (output, stdout, stderr) = run(secretless(&server).args(["--assertion-file", &path]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no usable client assertion"), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert_secret_absent(&assertion, &stdout, &stderr);
    assert_eq!(server.token_requests(), 0, "nothing was sent");

    let missing = dir.0.join("absent").display().to_string();
    let (output, _, stderr) = run(secretless(&server).args(["--assertion-file", &missing]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert_eq!(server.token_requests(), 0);
}

#[test]
fn a_fresh_assertion_file_is_sent_and_the_server_judges_it() {
    // The embedded server knows no assertion clients: it refuses, which shows the assertion
    // went out instead of a secret (none is set).
    let server = TestServer::start();
    let dir = Dir::new("fresh");
    let assertion = unsigned_jwt(4_000_000_000);
    let path = dir.file("token", &format!("{assertion}\n"));
    let (output, stdout, stderr) = run(secretless(&server).args(["--assertion-file", &path]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("oauth error:  invalid_client"), "{stderr}");
    assert_secret_absent(&assertion, &stdout, &stderr);
    assert_eq!(server.token_requests(), 1);
}

#[test]
fn a_private_key_from_a_file_or_stdin_signs_the_assertion() {
    let server = TestServer::start();
    let dir = Dir::new("key");
    let path = dir.file("key.pem", TEST_KEY_PEM);
    let (output, stdout, stderr) =
        run(secretless(&server).args(["--private-key", &path, "--alg", "ES256"]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("oauth error:  invalid_client"), "{stderr}");
    assert_secret_absent("MIGHAgEAMBMGByqGSM49", &stdout, &stderr);
    assert_eq!(server.token_requests(), 1);

    let mut child = secretless(&server)
        .args(["--private-key", "-", "--alg", "ES256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(TEST_KEY_PEM.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert_eq!(server.token_requests(), 2);
}

#[test]
fn a_bad_private_key_is_a_usage_error_that_never_quotes_it() {
    let server = TestServer::start();
    let dir = Dir::new("bad-key");
    let garbage = "-----BEGIN PRIVATE KEY-----\nhunter2hunter2\n-----END PRIVATE KEY-----\n";
    let path = dir.file("key.pem", garbage);
    let (output, stdout, stderr) =
        run(secretless(&server).args(["--private-key", &path, "--alg", "ES256"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unusable"), "{stderr}");
    assert_secret_absent("hunter2", &stdout, &stderr);

    let missing = dir.0.join("absent.pem").display().to_string();
    let (output, _, stderr) =
        run(secretless(&server).args(["--private-key", &missing, "--alg", "ES256"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");

    // Without --alg, clap refuses; the key file is never read from an argument's value.
    let (output, _, stderr) = run(secretless(&server).args(["--private-key", &path]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--alg"), "{stderr}");
    assert_eq!(server.token_requests(), 0);
}

#[test]
fn issuer_replaces_the_token_url_and_is_checked() {
    let (output, _, stderr) = run(cli().args([
        "--issuer",
        "http://idp.example.com",
        "--client-id",
        "c",
        "--assertion-file",
        "/nonexistent",
    ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("issuer"), "{stderr}");
    let (output, _, stderr) = run(cli().args([
        "--issuer",
        "https://idp.example.com",
        "--token-url",
        "https://idp.example.com/token",
        "--client-id",
        "c",
    ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
