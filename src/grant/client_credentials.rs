//! The client credentials grant (RFC 6749 §4.4): the client asks for a token on its own
//! behalf, for scopes (§3.3), an audience (the `audience` parameter of Auth0, Okta and many
//! others) and resources (RFC 8707).

use std::sync::Arc;

use crate::error::Error;
use crate::grant::{Grant, Scopes, check_resource, invalid};

/// The client credentials grant's parameters, checked.
pub(crate) struct ClientCredentialsGrant {
    scopes: Scopes,
    audience: Option<Box<str>>,
    resources: Vec<Box<str>>,
}

impl ClientCredentialsGrant {
    /// Its `grant_type` (RFC 6749 §4.4.2).
    pub(crate) const GRANT_TYPE: &str = "client_credentials";

    /// Its own parameters, in the order
    /// [`RESERVED_PARAMS`](crate::TokenRequestBuilder::RESERVED_PARAMS) lists them.
    pub(crate) const PARAMS: [&str; 3] = ["scope", "resource", "audience"];

    /// The grant for `scopes`, `audience` and `resources`, checked in that order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for a scope token RFC 6749 §3.3 does not allow (or an empty
    /// one), an empty audience, or a resource that is not an absolute URI or has a fragment
    /// (RFC 8707 §2).
    pub(crate) fn new(
        scopes: Vec<String>,
        audience: Option<String>,
        resources: Vec<String>,
    ) -> Result<Self, Error> {
        let scopes = Scopes::new(scopes)?;
        if audience.as_deref() == Some("") {
            return Err(invalid("audience", "it is empty"));
        }
        for resource in &resources {
            check_resource(resource)?;
        }
        Ok(Self {
            scopes,
            audience: audience.map(Into::into),
            resources: resources.into_iter().map(Into::into).collect(),
        })
    }
}

impl Grant for ClientCredentialsGrant {
    fn grant_type(&self) -> &'static str {
        Self::GRANT_TYPE
    }

    fn reserved(&self) -> &'static [&'static str] {
        &Self::PARAMS
    }

    fn form_pairs(&self, pair: &mut dyn FnMut(&str, &str)) {
        if let Some(scope) = self.scopes.joined() {
            pair("scope", scope);
        }
        if let Some(audience) = &self.audience {
            pair("audience", audience);
        }
        for resource in &self.resources {
            pair("resource", resource);
        }
    }

    fn identity(&self, field: &mut dyn FnMut(&str, &[u8])) {
        self.scopes.identity(field);
        if let Some(audience) = &self.audience {
            field("audience", audience.as_bytes());
        }
        for resource in &self.resources {
            field("resource", resource.as_bytes());
        }
    }

    fn scope(&self) -> Option<&Arc<str>> {
        self.scopes.joined()
    }

    fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    fn resources(&self) -> &[Box<str>] {
        &self.resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> ClientCredentialsGrant {
        ClientCredentialsGrant::new(
            vec!["b".into(), "a".into(), "b".into()],
            Some("x".into()),
            vec!["urn:r".into(), "urn:q".into()],
        )
        .unwrap()
    }

    #[test]
    fn pairs_go_as_asked_and_the_identity_sorts_the_scopes() {
        let mut pairs = Vec::new();
        grant().form_pairs(&mut |name, value| pairs.push(format!("{name}={value}")));
        assert_eq!(
            pairs,
            [
                "scope=b a b",
                "audience=x",
                "resource=urn:r",
                "resource=urn:q"
            ]
        );
        let mut fields = Vec::new();
        grant().identity(&mut |tag, value| {
            fields.push(format!("{tag}={}", String::from_utf8_lossy(value)));
        });
        assert_eq!(
            fields,
            [
                "scope=a",
                "scope=b",
                "audience=x",
                "resource=urn:r",
                "resource=urn:q"
            ]
        );
        assert_eq!(grant().grant_type(), "client_credentials");
        assert_eq!(grant().reserved(), ["scope", "resource", "audience"]);
    }

    #[test]
    fn a_grant_without_parameters_sends_and_compares_nothing_of_its_own() {
        let bare = ClientCredentialsGrant::new(Vec::new(), None, Vec::new()).unwrap();
        let mut count = 0;
        bare.form_pairs(&mut |_, _| count += 1);
        bare.identity(&mut |_, _| count += 1);
        assert_eq!(count, 0);
        assert_eq!(bare.scope(), None);
        assert_eq!(bare.audience(), None);
        assert!(bare.resources().is_empty());
    }
}
