//! Counters, faults, limits, bounds, and a property over any credentials.

use super::*;

#[test]
fn counters_and_faults_keep_the_resource_apart() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    assert_eq!(
        (
            server.requests_served(),
            server.token_requests(),
            server.resource_requests()
        ),
        (1, 1, 0)
    );
    server.set_fault(Some(Fault::Status(StatusCode::BAD_GATEWAY)));
    let request = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::OK,
        "token faults skip /api/"
    );
    let faulted = send_token_request(
        &server,
        &server.demo_credentials().token_request().build().unwrap(),
        &attempt(),
    );
    assert_eq!(faulted.status(), StatusCode::BAD_GATEWAY);
    server.set_fault(None);
    server.push_resource_fault(Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
    let refused = exchange(&server, &api(&server, Method::GET, "/api/x"));
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        exchange(&server, &api(&server, Method::GET, "/apix")).status(),
        StatusCode::NOT_FOUND
    );
    // 1 token + 1 faulted token request + 4 resource + 1 not found.
    assert_eq!(server.requests_served(), 7);
    assert_eq!(
        server.token_requests(),
        1,
        "a faulted request does not reach the endpoint"
    );
    assert_eq!(server.resource_requests(), 4);
}

#[test]
fn the_resource_reads_the_body_up_to_the_limit() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut request = with_bearer(api(&server, Method::POST, "/api/upload"), &token);
    *request.body_mut() = vec![b'a'; crate::refusal::MAX_REQUEST_BODY_LEN];
    assert_eq!(
        body(&exchange(&server, &request))["body_len"],
        json!(crate::refusal::MAX_REQUEST_BODY_LEN)
    );
    request.body_mut().push(b'a');
    assert_eq!(
        exchange(&server, &request).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn the_registry_forgets_the_oldest_past_its_cap() {
    let registry = Registry::default();
    let issued = Issued {
        client_id: "c".into(),
        scopes: vec![],
        audiences: vec![],
        exp: None,
        jkt: None,
        revoked: false,
    };
    for i in 0..=MAX_ISSUED_TOKENS {
        registry.record(&format!("t{i}"), issued.clone());
    }
    assert_eq!(registry.len(), MAX_ISSUED_TOKENS);
    assert!(registry.lookup("t0").is_none());
    assert!(registry.lookup("t1").is_some());
    assert!(registry.lookup(&format!("t{MAX_ISSUED_TOKENS}")).is_some());
}

#[test]
fn the_replay_store_forgets_the_oldest_past_its_cap() {
    let seen = SeenJtis::default();
    for i in 0..=MAX_DPOP_JTIS {
        assert!(seen.first_use(&format!("j{i}")));
    }
    assert!(!seen.first_use("j1"), "remembered");
    assert!(seen.first_use("j0"), "forgotten, past the cap");
}

proptest::proptest! {
    /// Whatever a request carries, the check of a server that issued nothing refuses it with a
    /// valid `WWW-Authenticate` header, and never panics.
    #[test]
    fn any_credentials_get_a_refusal_with_a_valid_challenge(
        scheme in "(Bearer|DPoP|dpop|Basic)",
        token in "[!-~]{0,80}",
        proof in "[!-~]{0,120}",
        path in "/api/(scope/)?[!-~&&[^?#]]{0,20}",
    ) {
        let access = crate::resource::AccessState::new("http://127.0.0.1:1".into(), Vec::new());
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("{scheme} {token}").parse().unwrap());
        headers.insert("dpop", proof.parse().unwrap());
        let uri: Uri = match path.parse() {
            Ok(uri) => uri,
            Err(_) => return Ok(()),
        };
        let refusal = access.check(&Method::GET, &uri, &headers, unix(now())).unwrap_err();
        proptest::prop_assert!(refusal.headers().contains_key(WWW_AUTHENTICATE));
        proptest::prop_assert!(!refusal.to_string().contains(&token) || token.len() < 8);
    }
}
