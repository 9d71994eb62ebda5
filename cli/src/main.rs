//! `client-credentials`: get an OAuth 2.0 access token by the client credentials grant and show
//! what is in it; the "curl for client credentials".
//!
//! The secret comes from an environment variable (`CLIENT_SECRET` unless `--secret-env` names
//! another) or from standard input (`--secret-stdin`, read without echo on a terminal), never
//! from an argument, which would land in the shell's history and in `ps`. Secretless clients
//! name a file instead: a private key (`--private-key FILE --alg ALG`, `-` for standard input)
//! that signs a `private_key_jwt` assertion per attempt, or an assertion the platform writes
//! (`--assertion-file FILE`, a Kubernetes service-account token). Exit status: 0 for a
//! token, 1 when the token endpoint refused or could not be reached, 2 for a usage error.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::error::Error as _;
use std::io::{self, BufRead as _, IsTerminal as _, Read as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use clap::{Parser, ValueEnum};
use client_credentials::auth::{
    AssertionFile, AssertionSource, ClientAuth, JwsAlgorithm, JwtAuth, PrivateKey,
};
use client_credentials::discovery::{Issuer, MetadataRequest};
use client_credentials::dpop::DpopKey;
use client_credentials::reqwest::TIMEOUT;
use client_credentials::reqwest::blocking::fetch_metadata;
use client_credentials::reqwest::blocking::{fetch_token, recommended_client};
use client_credentials::{ClientCredentials, ClientSecret, Error, Token, TokenUrl};
use client_credentials_test_server::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, TestServer};
use serde_json::{Map, Value, json};

/// The longest secret read from standard input, and the longest private key file.
const MAX_SECRET_LEN: usize = 64 * 1024;

/// base64url with or without padding, as JWTs are found in the wild.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Get an OAuth 2.0 access token by the client credentials grant (RFC 6749 §4.4), and show what
/// is in it.
///
/// The client secret is read from the CLIENT_SECRET environment variable (or the one
/// --secret-env names), or from standard input with --secret-stdin; never from an argument.
/// Try it with no identity provider at all: client-credentials --demo
#[derive(Debug, Parser)]
#[command(name = "client-credentials", version)]
struct Args {
    /// The token endpoint (https, or http on a loopback address)
    #[arg(long, value_name = "URL", required_unless_present_any = ["demo", "issuer"], conflicts_with = "issuer")]
    token_url: Option<String>,

    /// The authorization server's issuer: its token endpoint comes from its metadata (RFC 8414,
    /// OpenID Connect Discovery), and JWT assertions are addressed to it
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,

    /// Address JWT assertions to the token endpoint's URL even when the issuer is known, for a
    /// server that accepts nothing else as `aud`
    #[arg(long)]
    token_endpoint_audience: bool,

    /// The client identifier
    #[arg(long, value_name = "ID", required_unless_present = "demo")]
    client_id: Option<String>,

    /// Authenticate by private_key_jwt with the key in this PEM or DER (PKCS#8) file, `-` for
    /// standard input: no secret is read
    #[arg(long, value_name = "FILE", requires = "alg", conflicts_with_all = ["assertion_file", "secret_stdin", "demo"])]
    private_key: Option<String>,

    /// The private key's algorithm: ES256, RS256, PS256 or EdDSA
    #[arg(long, value_name = "ALG", requires = "private_key")]
    alg: Option<String>,

    /// The `kid` header of the assertions the private key signs
    #[arg(long, value_name = "KID", requires = "private_key")]
    key_id: Option<String>,

    /// Authenticate with the client assertion in this file, as a platform writes and rotates it
    /// (a Kubernetes service-account token, Entra ID's AZURE_FEDERATED_TOKEN_FILE): no secret
    /// is read
    #[arg(long, value_name = "FILE", conflicts_with_all = ["secret_stdin", "demo"])]
    assertion_file: Option<String>,

    /// Ask for a DPoP-bound token (RFC 9449), with a fresh ES256 key for this run
    #[arg(long)]
    dpop: bool,

    /// The environment variable that holds the client secret
    #[arg(long, value_name = "NAME", default_value = "CLIENT_SECRET")]
    secret_env: String,

    /// Read the client secret from standard input instead: its first line, or a prompt without
    /// echo on a terminal
    #[arg(long)]
    secret_stdin: bool,

    /// How the client authenticates: HTTP Basic (client_secret_basic), the same without the
    /// RFC 6749 §2.3.1 form-encoding of the id and secret (for a server that compares them
    /// raw), or in the form body (client_secret_post)
    #[arg(long, value_enum, default_value_t = Auth::Basic)]
    auth: Auth,

    /// A scope to ask for (repeatable; a value may hold several, separated by spaces)
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,

    /// The API the token is for, in the `audience` parameter (Auth0, Okta, …)
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,

    /// A resource the token is for, an absolute URI (RFC 8707; repeatable)
    #[arg(long = "resource", value_name = "URI")]
    resources: Vec<String>,

    /// Any other request parameter a server needs (repeatable)
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,

    /// Print machine-readable JSON: token_type, scope, expires_in, expires_at (Unix seconds)
    #[arg(long)]
    json: bool,

    /// Also print the access token itself, which grants access to whoever holds it
    #[arg(long)]
    show_token: bool,

    /// Run against an embedded token server on 127.0.0.1 with its demo client
    #[arg(long, conflicts_with_all = ["token_url", "client_id", "secret_stdin", "insecure_allow_http"])]
    demo: bool,

    /// Allow a plain http token URL on any host: the secret and the token then cross the
    /// network in clear text
    #[arg(long)]
    insecure_allow_http: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Auth {
    /// client_secret_basic: HTTP Basic authentication
    Basic,
    /// client_secret_basic without the form-encoding of the id and secret, for a server that
    /// compares them as they come
    BasicUnencoded,
    /// client_secret_post: the id and secret in the form body
    Post,
}

fn parse_param(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// Why the command failed.
enum Failure {
    /// A mistake in the arguments or the environment: exit 2.
    Usage(String),
    /// The token request failed: exit 1.
    Token(Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Token(error)) => {
            report(&error, args.json);
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let usage = |error: Error| Failure::Usage(error.to_string());
    // Kept alive until the exchange is done.
    let http = recommended_client();
    let demo_server;
    let mut issuer = None;
    let (token_url, client_id) = if args.demo {
        demo_server = TestServer::start();
        (demo_server.token_url(), DEMO_CLIENT_ID.to_owned())
    } else {
        let token_url = match &args.issuer {
            Some(issuer_url) => {
                let metadata = discover(&http, args, issuer_url)?;
                issuer = Some(metadata.issuer().to_owned());
                metadata.token_endpoint().clone()
            }
            None => {
                let url = args.token_url.as_deref().unwrap_or_default();
                if args.insecure_allow_http {
                    TokenUrl::insecure_allow_http(url)
                } else {
                    TokenUrl::new(url)
                }
                .map_err(usage)?
            }
        };
        (token_url, args.client_id.clone().unwrap_or_default())
    };
    let auth = if let Some(path) = &args.private_key {
        let mut jwt = JwtAuth::new(read_private_key(args, path)?);
        if let Some(issuer) = &issuer {
            jwt = jwt.with_issuer(issuer);
        }
        if args.token_endpoint_audience {
            jwt = jwt.with_token_endpoint_audience();
        }
        ClientAuth::Jwt(jwt)
    } else if let Some(path) = &args.assertion_file {
        ClientAuth::Source(AssertionSource::new(AssertionFile::new(path)))
    } else {
        let secret = if args.demo {
            ClientSecret::new(DEMO_CLIENT_SECRET)
        } else {
            read_secret(args)?
        };
        match args.auth {
            Auth::Basic => ClientAuth::SecretBasic(secret),
            Auth::BasicUnencoded => ClientAuth::SecretBasicUnencoded(secret),
            Auth::Post => ClientAuth::SecretPost(secret),
        }
    };
    let mut client = ClientCredentials::with_auth(token_url, client_id, auth).map_err(usage)?;
    if args.dpop {
        let key = PrivateKey::generate(JwsAlgorithm::Es256)
            .and_then(DpopKey::new)
            .map_err(usage)?;
        client = client.with_dpop(key);
    }
    let mut builder = client.token_request();
    for scope in &args.scopes {
        builder = builder.scope(scope);
    }
    if let Some(audience) = &args.audience {
        builder = builder.audience(audience);
    }
    for resource in &args.resources {
        builder = builder.resource(resource);
    }
    for (key, value) in &args.params {
        builder = builder.param(key, value);
    }
    let request = builder.build().map_err(usage)?;

    let token = fetch_token(&http, &request, TIMEOUT).map_err(Failure::Token)?;
    if args.json {
        println!("{}", token_json(&token, args.show_token));
    } else {
        print_summary(client.token_url(), &token, args.show_token);
    }
    Ok(())
}

/// The issuer's metadata, by RFC 8414 and then OpenID Connect Discovery.
fn discover(
    http: &reqwest::blocking::Client,
    args: &Args,
    issuer_url: &str,
) -> Result<client_credentials::discovery::ServerMetadata, Failure> {
    let issuer = if args.insecure_allow_http {
        Issuer::insecure_allow_http(issuer_url)
    } else {
        Issuer::new(issuer_url)
    }
    .map_err(|e| Failure::Usage(e.to_string()))?;
    match fetch_metadata(http, &MetadataRequest::oauth(issuer.clone()), TIMEOUT) {
        Ok(metadata) => Ok(metadata),
        Err(_) => {
            fetch_metadata(http, &MetadataRequest::openid(issuer), TIMEOUT).map_err(Failure::Token)
        }
    }
}

/// The private key from its file or standard input; never from an argument.
fn read_private_key(args: &Args, path: &str) -> Result<PrivateKey, Failure> {
    let algorithm = JwsAlgorithm::parse(args.alg.as_deref().unwrap_or_default());
    let failed = |e: io::Error| {
        Failure::Usage(format!(
            "could not read the private key from {path}: {e}; give a PEM or DER (PKCS#8) file, or - for standard input"
        ))
    };
    let mut bytes = Vec::new();
    if path == "-" {
        io::stdin()
            .lock()
            .take(MAX_SECRET_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(failed)?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_SECRET_LEN as u64 + 1).read_to_end(&mut bytes))
            .map_err(failed)?;
    }
    if bytes.len() > MAX_SECRET_LEN {
        return Err(Failure::Usage(format!(
            "the private key in {path} is longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    let key = if bytes.starts_with(b"-----BEGIN") {
        let pem = String::from_utf8(bytes)
            .map_err(|_| Failure::Usage(format!("the PEM in {path} is not valid utf-8")))?;
        PrivateKey::from_pem(algorithm, &pem)
    } else {
        PrivateKey::from_der(algorithm, &bytes)
    }
    .map_err(|e| Failure::Usage(format!("the private key in {path} is unusable: {e}")))?;
    Ok(match &args.key_id {
        Some(key_id) => key.with_key_id(key_id),
        None => key,
    })
}

/// The secret from standard input or the environment; never from an argument.
fn read_secret(args: &Args) -> Result<ClientSecret, Failure> {
    let secret = if args.secret_stdin {
        read_secret_stdin()?
    } else {
        std::env::var(&args.secret_env).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not valid unicode",
            };
            Failure::Usage(format!(
                "the client secret's environment variable {} {why}: set it, name another with --secret-env, or pass --secret-stdin",
                args.secret_env
            ))
        })?
    };
    if secret.is_empty() {
        return Err(Failure::Usage(
            "the client secret is empty: check the environment variable or standard input"
                .to_owned(),
        ));
    }
    Ok(ClientSecret::new(secret))
}

fn read_secret_stdin() -> Result<String, Failure> {
    let failed = |e: io::Error| {
        Failure::Usage(format!(
            "could not read the secret from standard input: {e}"
        ))
    };
    if io::stdin().is_terminal() {
        return rpassword::prompt_password("client secret (not echoed): ").map_err(failed);
    }
    let mut line = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_SECRET_LEN as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(failed)?;
    if line.len() > MAX_SECRET_LEN {
        return Err(Failure::Usage(format!(
            "the secret on standard input is longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    let mut secret = String::from_utf8(line).map_err(|_| {
        Failure::Usage("the secret on standard input is not valid utf-8".to_owned())
    })?;
    while secret.ends_with(['\n', '\r']) {
        secret.pop();
    }
    Ok(secret)
}

fn token_json(token: &Token, show_token: bool) -> String {
    let mut out = Map::new();
    out.insert("token_type".into(), json!(token.token_type().as_str()));
    out.insert("scope".into(), json!(token.scope()));
    out.insert(
        "expires_in".into(),
        json!(token.expires_in().map(|d| d.as_secs())),
    );
    out.insert(
        "expires_at".into(),
        json!(token.expires_at().map(unix_seconds)),
    );
    if show_token {
        out.insert("access_token".into(), json!(token.access_token().secret()));
    }
    serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
}

fn print_summary(token_url: &TokenUrl, token: &Token, show_token: bool) {
    let access_token = token.access_token().secret();
    println!("token endpoint: {token_url}");
    println!("token type:     {}", printable(token.token_type().as_str()));
    println!(
        "scope:          {}",
        token.scope().map_or("(none)".into(), printable)
    );
    match (token.expires_in(), token.expires_at()) {
        (Some(lifetime), Some(at)) => println!(
            "expires:        in {}s, at {}",
            lifetime.as_secs(),
            http_date(at).unwrap_or_else(|| "(out of range)".to_owned())
        ),
        _ => println!("expires:        unknown (the server sent no expires_in)"),
    }
    if show_token {
        println!("access token:   {access_token}");
    } else {
        // Only the length: even a few characters of an opaque token are a real part of it.
        println!(
            "access token:   ({} characters; --show-token prints it)",
            access_token.chars().count()
        );
    }
    println!();
    match decode_jwt(access_token) {
        Some((header, claims)) => {
            println!(
                "access token claims (a JWT, decoded but UNVERIFIED: its signature was not checked)"
            );
            let alg = header.get("alg").map_or("?".to_owned(), Value::to_string);
            let typ = header.get("typ").map_or("?".to_owned(), Value::to_string);
            println!("  (header)  alg {alg}, typ {typ}");
            for (name, value) in &claims {
                let when = match name.as_str() {
                    "exp" | "iat" | "nbf" | "auth_time" => format!(" {}", numeric_date(value)),
                    _ => String::new(),
                };
                println!("  {:<9} {value}{when}", printable(name));
            }
        }
        None => println!("the access token is not a JWT: it is opaque to the client"),
    }
}

/// The header and claims of a JWS compact serialization, decoded without any verification.
fn decode_jwt(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None; // a JWE: encrypted claims
    }
    let object = |part: &str| match serde_json::from_slice(&BASE64URL.decode(part).ok()?) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    Some((object(header)?, object(claims)?))
}

/// Server text with control characters escaped, so that it cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A JWT NumericDate (RFC 7519 §2: seconds since the epoch, possibly fractional) as an HTTP
/// date in parentheses; a claim that is negative, too large for a date, or not a number is said to be so
/// rather than trusted, since the claims are unverified.
fn numeric_date(value: &Value) -> String {
    let secs = match (value.as_u64(), value.as_f64()) {
        (Some(secs), _) => secs,
        // The fraction is dropped; `as` saturates a huge float, which `http_date` then refuses.
        (None, Some(secs)) if secs >= 0.0 => secs as u64,
        (None, Some(_)) => return "(out of range)".to_owned(),
        (None, None) => return "(not a number)".to_owned(),
    };
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .and_then(http_date)
        .map_or_else(|| "(out of range)".to_owned(), |date| format!("({date})"))
}

/// The time as an HTTP date, if it is one (`httpdate` handles 1970 to 9999).
fn http_date(at: SystemTime) -> Option<String> {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < 253_402_300_800 => Some(httpdate::fmt_http_date(at)),
        _ => None,
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn report(error: &Error, json: bool) {
    eprintln!("error: {error}");
    if let Some(oauth) = error.oauth() {
        eprintln!("  oauth error:  {}", oauth.code());
        if let Some(uri) = oauth.uri() {
            eprintln!("  see:          {uri}");
        }
    }
    if error.is_retryable() {
        eprintln!("  this can succeed if retried later");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if json {
        let oauth = error.oauth();
        let out = json!({
            "error": oauth.map(|e| e.code().as_str()),
            "error_description": oauth.and_then(|e| e.description()),
            "status": error.status().map(|s| s.as_u16()),
            "retryable": error.is_retryable(),
            "message": error.to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates_out_of_range_are_said_to_be() {
        assert_eq!(numeric_date(&json!(0)), "(Thu, 01 Jan 1970 00:00:00 GMT)");
        assert_eq!(numeric_date(&json!(1.9)), "(Thu, 01 Jan 1970 00:00:01 GMT)");
        for huge in [
            json!(10_000_000_000_000_000_000_u64),
            json!(u64::MAX),
            json!(1e300),
            json!(253_402_300_800_u64),
            json!(-5),
            json!(-0.5),
            json!(i64::MIN),
        ] {
            assert_eq!(numeric_date(&huge), "(out of range)", "{huge}");
        }
        for other in [json!("soon"), json!(null), json!([1]), json!({})] {
            assert_eq!(numeric_date(&other), "(not a number)", "{other}");
        }
    }
}
