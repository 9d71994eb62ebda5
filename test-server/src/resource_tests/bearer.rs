//! Bearer tokens at the resource (RFC 6750): grants, challenges, revocation, expiry, scope.

use super::*;

#[test]
fn a_bearer_token_gets_200_with_what_the_resource_saw() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut request = with_bearer(api(&server, Method::PUT, "/api/things/1?x=2"), &token);
    *request.body_mut() = b"twelve bytes".to_vec();
    let response = exchange(&server, &request);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(&response),
        json!({
            "client_id": DEMO_CLIENT_ID,
            "scope": "read",
            "method": "PUT",
            "path": "/api/things/1",
            "body_len": 12,
            "token_type": "Bearer",
        })
    );
    let grant = server
        .check_access(&Method::GET, &"/api/x".parse().unwrap(), request.headers())
        .unwrap();
    assert_eq!(grant.client_id(), DEMO_CLIENT_ID);
    assert_eq!(grant.scopes(), ["read"]);
    assert!(grant.has_scope("read") && !grant.has_scope("write"));
    assert_eq!(grant.token_type(), &TokenType::Bearer);
    assert_eq!(grant.issuer(), server.url(""));
    assert_eq!(grant.jkt(), None);
    assert!(!format!("{grant:?}").contains(token.secret()));
}

#[test]
fn no_credentials_get_401_with_bare_challenges_rfc6750_3_1() {
    let server = TestServer::start();
    for authorization in [None, Some("Basic ZGVtbzpzZWNyZXQ="), Some("Negotiate abc")] {
        let mut request = api(&server, Method::GET, "/api/x");
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, value.parse().unwrap());
        }
        let response = exchange(&server, &request);
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        let header = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            header.starts_with(r#"Bearer realm="test-server", DPoP realm="test-server""#),
            "{header}"
        );
        assert!(!header.contains("error"), "{header}");
        let refusal = server
            .check_access(&Method::GET, &"/api/x".parse().unwrap(), request.headers())
            .unwrap_err();
        assert_eq!(refusal.error(), None);
        assert_eq!(refusal.www_authenticate(), header);
        assert!(
            refusal.to_string().contains("carries no access token"),
            "{refusal}"
        );
    }
}

#[test]
fn a_malformed_authorization_is_400_invalid_request() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let mut twice = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    twice.headers_mut().append(
        AUTHORIZATION,
        format!("Bearer {}", token.secret()).parse().unwrap(),
    );
    assert_refused(&exchange(&server, &twice), 400, "Bearer", "invalid_request");
    for value in [
        "Bearer",
        "Bearer  ",
        "Bearer a b",
        "Bearer ===",
        "Bearer a,b",
    ] {
        let mut request = api(&server, Method::GET, "/api/x");
        request
            .headers_mut()
            .insert(AUTHORIZATION, value.parse().unwrap());
        assert_refused(
            &exchange(&server, &request),
            400,
            "Bearer",
            "invalid_request",
        );
    }
}

#[test]
fn unknown_and_forged_tokens_are_invalid_token() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let other = TestServer::start();
    let foreign = bearer_token(&other);
    // The same claims with a scope added: an unsecured JWT proves nothing, so only the very
    // token issued is accepted.
    let mut forged = claims(&token);
    forged["scope"] = json!("read write");
    let forged = AccessToken::new(format!(
        "{}.{}.",
        token.secret().split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(forged.to_string())
    ));
    for bad in [AccessToken::new("opaque-and-unknown"), foreign, forged] {
        let response = exchange(
            &server,
            &with_bearer(api(&server, Method::GET, "/api/x"), &bad),
        );
        assert_refused(&response, 401, "Bearer", "invalid_token");
        assert!(
            body(&response)["error_description"]
                .as_str()
                .unwrap()
                .contains("unknown")
        );
    }
}

#[test]
fn a_revoked_token_is_invalid_token() {
    let server = TestServer::start();
    let token = bearer_token(&server);
    let kept = bearer_token(&server);
    let request = with_bearer(api(&server, Method::GET, "/api/x"), &token);
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
    assert!(server.revoke(&token));
    assert!(!server.revoke(&token), "already revoked");
    assert!(!server.revoke(&AccessToken::new("never-issued")));
    let response = exchange(&server, &request);
    assert_refused(&response, 401, "Bearer", "invalid_token");
    assert_eq!(
        body(&response)["error_description"],
        json!("the token was revoked")
    );
    let kept_request = with_bearer(api(&server, Method::GET, "/api/x"), &kept);
    assert_eq!(exchange(&server, &kept_request).status(), StatusCode::OK);
    assert_eq!(server.revoke_all(), 1);
    assert_refused(
        &exchange(&server, &kept_request),
        401,
        "Bearer",
        "invalid_token",
    );
    assert_eq!(server.revoke_all(), 0);
}

#[test]
fn an_expired_token_is_invalid_token() {
    let server = TestServer::builder().expires_in(Some(0)).start();
    let token = bearer_token(&server);
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &token),
    );
    assert_refused(&response, 401, "Bearer", "invalid_token");
    assert_eq!(
        body(&response)["error_description"],
        json!("the token expired")
    );
    // Without `expires_in`, tokens never expire.
    let server = TestServer::builder().expires_in(None).start();
    let token = bearer_token(&server);
    let response = exchange(
        &server,
        &with_bearer(api(&server, Method::GET, "/api/x"), &token),
    );
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn a_scoped_path_needs_its_scope_rfc6750_3_1() {
    let server = TestServer::start();
    let token = bearer_token(&server); // scope "read"
    let allowed = with_bearer(api(&server, Method::GET, "/api/scope/read/items"), &token);
    assert_eq!(exchange(&server, &allowed).status(), StatusCode::OK);
    let denied = with_bearer(api(&server, Method::POST, "/api/scope/write/items"), &token);
    let response = exchange(&server, &denied);
    assert_refused(&response, 403, "Bearer", "insufficient_scope");
    assert_eq!(
        challenge(response.headers(), "Bearer").param("scope"),
        Some("write")
    );
    let refusal = server
        .check_access(&Method::POST, denied.uri(), denied.headers())
        .unwrap_err();
    assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
    assert_eq!(refusal.scope(), Some("write"));
    // Percent-encoded scopes are decoded.
    let server = TestServer::builder()
        .client(TestClient::new("c", "s").scopes(["api:read"]))
        .start();
    let client = client_credentials::ClientCredentials::new(
        server.token_url(),
        "c",
        client_credentials::ClientSecret::new("s"),
    );
    let token = fetch(&server, &client.token_request().build().unwrap()).unwrap();
    let request = with_bearer(
        api(&server, Method::GET, "/api/scope/api%3Aread/x"),
        token.access_token(),
    );
    assert_eq!(exchange(&server, &request).status(), StatusCode::OK);
}
