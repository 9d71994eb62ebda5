//! What a token source and the call layers cost a slow, silent or refusing identity provider,
//! against the embedded server on 127.0.0.1: the figures of issue 21's items 5 and 8.
//!
//! ```text
//! cargo run --release --example degraded_idp --features reqwest-blocking,reqwest-middleware
//! ```
//!
//! It prints, for a token endpoint that never answers, how long four blocking callers wait and
//! how many requests they and four async tasks send; for an API that refuses every token, how
//! many token requests 20 s of calls cost; and whether another API's calls still succeed while
//! the refused token's replacement fails.
// It measures how long callers waited: the clock is read here, never in the library's core.
#![allow(clippy::disallowed_methods)]
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use client_credentials::reqwest_middleware::AuthorizeMiddleware;
use client_credentials::{CachePolicy, TokenSource};
use client_credentials_test_server::{Fault, TestServer};

/// Four threads ask a blocking source whose token endpoint never answers.
fn blocking() {
    let server = TestServer::start();
    server.set_fault(Some(Fault::NeverAnswer));
    let request = server.demo_credentials().token_request().build().unwrap();
    let policy = CachePolicy::new().with_fetch_timeout(Duration::from_millis(1500));
    let source = client_credentials::reqwest::blocking::TokenSource::with_policy(
        client_credentials::reqwest::blocking::recommended_client(),
        request,
        policy,
    );
    let barrier = Arc::new(Barrier::new(4));
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (source, barrier) = (source.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let r = source.token();
                (r.is_err(), start.elapsed())
            })
        })
        .collect();
    let mut times: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    times.sort_by_key(|t| t.1);
    println!(
        "blocking, 4 threads, 1.5 s timeout: {:?}; requests {}",
        times
            .iter()
            .map(|t| format!(
                "{} {:.2}s",
                if t.0 { "err" } else { "ok" },
                t.1.as_secs_f64()
            ))
            .collect::<Vec<_>>(),
        server.requests_served()
    );
}

/// Four tasks ask an async source whose token endpoint never answers, ten times.
async fn asynchronous() {
    let mut counts = Vec::new();
    for _ in 0..10 {
        let server = TestServer::start();
        server.set_fault(Some(Fault::NeverAnswer));
        let request = server.demo_credentials().token_request().build().unwrap();
        let policy = CachePolicy::new().with_fetch_timeout(Duration::from_millis(500));
        let source =
            TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request)
                .with_policy(policy);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let s = source.clone();
                tokio::spawn(async move { s.token().await.is_err() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        counts.push(server.requests_served());
    }
    println!("async, 4 tasks, 10 runs, requests per run: {counts:?}");
}

/// Calls to an API that refuses every token (another server's), every 50 ms for 20 s.
async fn refusing_api() {
    let server = TestServer::start();
    let elsewhere = TestServer::start();
    let request = server.demo_credentials().token_request().build().unwrap();
    let tokens = TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request);
    let api = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens))
        .build();
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let _ = api.get(elsewhere.url("/api/b")).send().await;
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "API refusing every token, 20 s, {calls} calls: {} token requests",
        server.token_requests()
    );
}

/// An API refuses the token while the token endpoint is down: calls to another API.
async fn other_apis_while_replacement_fails() {
    let server = TestServer::start();
    let elsewhere = TestServer::start();
    let request = server.demo_credentials().token_request().build().unwrap();
    let tokens = TokenSource::reqwest(client_credentials::reqwest::recommended_client(), request);
    let api = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthorizeMiddleware::new(tokens))
        .build();
    let _ = api.get(server.url("/api/a")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the minimum age
    server.set_fault(Some(Fault::ServiceUnavailable {
        retry_after: Duration::from_secs(30),
    }));
    let refused = api.get(elsewhere.url("/api/b")).send().await;
    let mut ok = 0;
    for _ in 0..20 {
        let answer = api.get(server.url("/api/c")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            ok += 1;
        }
    }
    println!(
        "refusing API's call: {}; other API, 20 calls during the back-off: {ok} answered 200",
        match refused {
            Ok(r) => format!("http {}", r.status()),
            Err(e) => format!("error: {e}"),
        }
    );
}

fn main() {
    blocking();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(asynchronous());
    rt.block_on(refusing_api());
    rt.block_on(other_apis_while_replacement_fails());
}
