//! The first thing to run: start the embedded token server (the `client-credentials-test-server`
//! crate, a dev-dependency), fetch a token from it through the reqwest adapter, show the token,
//! then show what a failure looks like.
//!
//! ```text
//! cargo run --example quickstart --features reqwest
//! ```
//!
//! Against a real identity provider, only the token URL, the client id and the secret change.

use client_credentials::reqwest::{TIMEOUT, fetch_token, recommended_client};
use client_credentials::{ClientCredentials, ClientSecret};
use client_credentials_test_server::{
    DEMO_AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, TestServer,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A real OAuth 2.0 token endpoint on 127.0.0.1, with a demo client registered.
    let server = TestServer::start();
    println!("token endpoint: {}", server.token_url());

    // Validated once: the URL, the client's credentials, the scopes and the audience.
    let client = ClientCredentials::new(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientSecret::new(DEMO_CLIENT_SECRET),
    );
    let request = client
        .token_request()
        .scope("read")
        .audience(DEMO_AUDIENCE)
        .build()?;

    // Redirects off, connect and total timeouts: the safe defaults for a token endpoint.
    let http = recommended_client();
    let token = fetch_token(&http, &request, TIMEOUT).await?;

    println!("\ngot a token");
    println!("  type:    {}", token.token_type());
    println!(
        "  scopes:  {}",
        token.scopes().collect::<Vec<_>>().join(" ")
    );
    match (token.expires_in(), token.expires_at()) {
        (Some(lifetime), Some(at)) => println!(
            "  expires: in {}s, at {}",
            lifetime.as_secs(),
            httpdate::fmt_http_date(at)
        ),
        _ => println!("  expires: unknown (the server sent no expires_in)"),
    }
    println!("  token:   {}", redacted(token.access_token().secret()));

    // One failure: the wrong secret. The error is typed and its message says what to do.
    let wrong = ClientCredentials::new(
        server.token_url(),
        DEMO_CLIENT_ID,
        ClientSecret::new("not-the-secret"),
    );
    let request = wrong.token_request().scope("read").build()?;
    match fetch_token(&http, &request, TIMEOUT).await {
        Ok(_) => return Err("the server accepted a wrong secret".into()),
        Err(error) => {
            let code = error
                .oauth()
                .map_or("(none)", |oauth| oauth.code().as_str());
            println!("\nwith a wrong secret");
            println!("  oauth error: {code}");
            println!("  retryable:   {}", error.is_retryable());
            println!("  message:     {error}");
        }
    }
    Ok(())
}

/// The first 8 characters of a token, enough to tell tokens apart in a log, never to use one.
fn redacted(token: &str) -> String {
    let start: String = token.chars().take(8).collect();
    format!("{start}… ({} characters)", token.chars().count())
}
